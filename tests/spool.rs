//! The spool: records outlive an agent outage longer than the queue, and the process's
//! own restarts, and come back in order. Real sockets, real files, real processes.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use geneva_audit::agent::TestAgent;
use geneva_audit::{Client, SpoolSync};

/// Sends `n` records from `from` with `try_send`, every one of which must be accepted,
/// waiting (on the queue's length, with a deadline) whenever the queue is half full:
/// without a spool and without an agent it would never drain.
fn try_send_all(client: &Client, from: u64, n: u64, queue: u64) {
    for i in from..from + n {
        if client.stats().queue_len >= queue / 2 {
            wait_until("the queue to drain into the spool", || {
                client.stats().queue_len < queue / 4
            });
        }
        if let Err(e) = client.try_send(record(i)) {
            panic!("record {i} refused: {e}");
        }
    }
}

/// Waits until the agent has every record in `0..n` at least once; returns their first
/// arrivals in order and the duplicates.
fn wait_for_all(agent: &TestAgent, n: u64) -> (Vec<u64>, u64) {
    let all = wait_until_within(Duration::from_secs(120), || {
        let got: HashSet<u64> = seqs(&agent.frames()).into_iter().collect();
        got.len() as u64 >= n
    });
    assert!(all, "the agent never had all {n} records");
    first_arrivals(&seqs(&agent.frames()), &mut HashSet::new())
}

#[test]
fn an_outage_longer_than_the_queue_loses_nothing_and_keeps_the_order() {
    const N: u64 = 100_000;
    const QUEUE: u64 = 1_000;
    let dir = TempDir::new("spool-outage");
    let client = builder()
        .unix_socket(dir.socket())
        .queue_capacity(QUEUE as usize)
        .spool(dir.0.join("spool"))
        .build()
        .unwrap();
    // No agent yet: every record goes to disk, none is refused.
    try_send_all(&client, 0, N, QUEUE);
    let s = client.stats();
    assert_eq!(s.accepted, N);
    assert_eq!(s.refused_full, 0);
    wait_until("everything spooled", || client.stats().spooled == N);
    assert!(client.stats().spool_bytes > 0);
    // The agent comes back: the spool drains, first arrivals in order.
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let (first, _dups) = wait_for_all(&agent, N);
    assert_consecutive(&first, 0, N);
    client.flush(PATIENCE).unwrap();
    let report = client.close(PATIENCE);
    assert_eq!(report.delivered, N);
    assert_eq!(report.spooled, 0);
    assert!(report.unsent.is_empty());
    assert_eq!(report.stats.spool_bytes, 0, "{:?}", report.stats);
}

#[test]
fn close_spools_what_it_cannot_deliver_and_the_next_client_sends_it_first() {
    const N: u64 = 500;
    let dir = TempDir::new("spool-close");
    let spool = dir.0.join("spool");
    let first = builder()
        .unix_socket(dir.socket())
        .spool(&spool)
        .spool_sync(SpoolSync::Always)
        .build()
        .unwrap();
    try_send_all(&first, 0, N, 2048);
    let report = first.close(Duration::from_millis(100));
    assert_eq!(report.spooled, N, "{:?}", report.stats);
    assert!(report.unsent.is_empty());
    assert_eq!(report.delivered, 0);
    drop(first);

    let agent = TestAgent::unix(dir.socket()).unwrap();
    let second = builder()
        .unix_socket(dir.socket())
        .spool(&spool)
        .build()
        .unwrap();
    try_send_all(&second, N, N, 2048);
    let (arrivals, _dups) = wait_for_all(&agent, 2 * N);
    assert_consecutive(&arrivals, 0, 2 * N);
    second.flush(PATIENCE).unwrap();
    let report = second.close(PATIENCE);
    assert_eq!(report.delivered, N);
    assert_eq!(report.stats.spool_replayed, N);
    assert_eq!(report.spooled, 0);
}

/// At close the outbox may hold spooled frames the agent has not read yet and, behind
/// them, records that went the direct way once the spool had nothing left to read: the
/// spool keeps them in that order, so the next client sends the spooled ones first.
#[test]
fn close_keeps_records_sent_behind_spooled_ones_behind_them() {
    const N: u64 = 50;
    const M: u64 = 50;
    let dir = TempDir::new("spool-close-order");
    let spool = dir.0.join("spool");
    let first = builder()
        .unix_socket(dir.socket())
        .spool(&spool)
        .spool_sync(SpoolSync::Always)
        .build()
        .unwrap();
    // No agent: the first N go to disk.
    try_send_all(&first, 0, N, 2048);
    wait_until("the first records spooled", || first.stats().spooled == N);
    // An agent reading about a frame every 50 ms (enough to prove the connection): the
    // spool drains into its socket, then the next M go the direct way behind them.
    let agent = TestAgent::unix(dir.socket()).unwrap();
    agent.set_read_rate(Some(12_000));
    wait_until("the spooled records written", || first.stats().written >= N);
    try_send_all(&first, N, M, 2048);
    wait_until("every record written", || first.stats().written >= N + M);
    let report = first.close(Duration::from_millis(100));
    // What the agent was not seen to read stays in the spool.
    assert!(report.delivered < N, "{:?}", report.stats);
    assert_eq!(
        report.spooled,
        N + M - report.delivered,
        "{:?}",
        report.stats
    );
    assert!(report.unsent.is_empty(), "{:?}", report.stats);
    drop(first);
    agent.kill();
    let mut arrived = seqs(&agent.frames());

    let agent = TestAgent::unix(dir.socket()).unwrap();
    let second = builder()
        .unix_socket(dir.socket())
        .spool(&spool)
        .build()
        .unwrap();
    let all = wait_until_within(Duration::from_secs(120), || {
        let got: HashSet<u64> = seqs(&agent.frames())
            .into_iter()
            .chain(arrived.clone())
            .collect();
        got.len() as u64 >= N + M
    });
    assert!(all, "the agents never had all {} records", N + M);
    arrived.extend(seqs(&agent.frames()));
    let (first_arrivals, _dups) = first_arrivals(&arrived, &mut HashSet::new());
    assert_consecutive(&first_arrivals, 0, N + M);
    let report = second.close(PATIENCE);
    assert_eq!(report.stats.spool_bytes, 0, "{:?}", report.stats);
}

/// The child side of the kill test: sends records with no agent, into a spool that
/// syncs every write, and prints how many the spool has taken (each line a promise:
/// that many records are on disk), until it is killed.
#[test]
#[ignore = "run by spilling_process_killed_keeps_every_record_it_synced"]
fn child_spilling_until_killed() {
    let Ok(dir) = std::env::var("SPOOL_KILL_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let client = builder()
        .unix_socket(dir.join("no-agent.sock"))
        .spool(dir.join("spool"))
        .spool_sync(SpoolSync::Always)
        .build()
        .unwrap();
    let mut reported = 0;
    for i in 0.. {
        // Paced by the spool: never more than a queue's worth ahead of it.
        while client.stats().accepted - client.stats().spooled >= 1_000 {
            std::thread::yield_now();
        }
        client.try_send(record(i)).unwrap();
        let spooled = client.stats().spooled;
        if spooled >= reported + 100 {
            println!("spooled {spooled}");
            reported = spooled;
        }
    }
}

#[test]
fn spilling_process_killed_keeps_every_record_it_synced() {
    let dir = TempDir::new("spool-kill");
    let (mut child, lines) = child_test("child_spilling_until_killed", "SPOOL_KILL_DIR", &dir.0);
    let mut promised = 0u64;
    while promised < 2_000 {
        let line = lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("the child stopped reporting at {promised}: {e}"));
        if let Some(n) = line.strip_prefix("spooled ") {
            promised = n.trim().parse().unwrap();
        }
    }
    // SIGKILL in the middle of spilling: no close, no sync, no destructor.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(
        promised >= 2_000,
        "the child spooled only {promised} records"
    );

    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .spool(dir.0.join("spool"))
        .build()
        .unwrap();
    let (first, _dups) = wait_for_all(&agent, promised);
    assert_consecutive(&first[..promised as usize], 0, promised);
    wait_until("the spool drained", || client.stats().spool_bytes == 0);
    let report = client.close(PATIENCE);
    // Every record came from the spool, at least as many as were promised.
    assert!(
        report.stats.spool_replayed >= promised,
        "{} replayed, {promised} promised",
        report.stats.spool_replayed
    );
    assert_eq!(report.stats.accepted, 0);
}

#[test]
fn a_second_client_on_one_spool_is_refused_naming_the_directory() {
    let dir = TempDir::new("spool-locked");
    let spool = dir.0.join("spool");
    let first = builder()
        .unix_socket(dir.socket())
        .spool(&spool)
        .build()
        .unwrap();
    let second = builder().unix_socket(dir.socket()).spool(&spool).build();
    match second {
        Err(e @ geneva_audit::BuildError::SpoolLocked(_)) => {
            let text = e.to_string();
            assert!(text.contains(&*spool.to_string_lossy()), "{text}");
        }
        other => panic!("expected SpoolLocked, got {other:?}"),
    }
    first.close(Duration::ZERO);
    // Once the first is gone, the directory is free again.
    let third = builder().unix_socket(dir.socket()).spool(&spool).build();
    assert!(third.is_ok(), "{third:?}");
}

#[test]
fn a_full_spool_falls_back_to_memory_and_loses_nothing() {
    use geneva_audit::{Event, SendError};
    const QUEUE: usize = 256;
    let dir = TempDir::new("spool-full");
    let client = builder()
        .unix_socket(dir.socket())
        .queue_capacity(QUEUE)
        .spool(dir.0.join("spool"))
        .spool_limit(64 * 1024)
        .build()
        .unwrap();
    let notifications = client.notifications();
    // No agent: the spool fills to its limit, then the queue, then records are refused
    // and handed back, as without a spool.
    let mut accepted = 0u64;
    loop {
        match client.try_send(record(accepted)) {
            Ok(()) => accepted += 1,
            Err(SendError::QueueFull(back)) => {
                if client.stats().spool_errors > 0 && client.stats().queue_len == QUEUE as u64 {
                    assert_eq!(seq_of(&back), accepted);
                    break;
                }
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
    }
    let s = client.stats();
    assert!(s.spooled > 0 && s.spooled < accepted, "{s:?}");
    assert!(s.spool_bytes <= 64 * 1024, "{s:?}");
    // The writer tells the fault on its own thread: wait for it, with a deadline.
    let deadline = std::time::Instant::now() + PATIENCE;
    let fault = std::iter::from_fn(|| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        notifications.recv_timeout(left).ok()
    })
    .find_map(|n| match n.event {
        Event::SpoolFailed { error, .. } => Some(error),
        _ => None,
    })
    .expect("a SpoolFailed notification");
    assert!(fault.contains("limit") || fault.contains("full"), "{fault}");
    // The agent comes back: every accepted record arrives, in order.
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let (first, _dups) = wait_for_all(&agent, accepted);
    assert_consecutive(&first, 0, accepted);
    client.flush(PATIENCE).unwrap();
    let report = client.close(PATIENCE);
    assert_eq!(report.delivered, accepted);
}

/// The number a test record was made with (its operation name is `Operation{n}`).
fn seq_of(record: &geneva_audit::Record) -> u64 {
    let name = record.get_operation_name();
    name.strip_prefix("Operation")
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

#[test]
fn behind_a_slow_agent_records_go_to_disk_and_arrive_in_order() {
    const N: u64 = 10_000;
    const QUEUE: u64 = 1_000;
    let dir = TempDir::new("spool-slow");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    agent.set_read_rate(Some(4 << 20));
    let client = builder()
        .unix_socket(dir.socket())
        .queue_capacity(QUEUE as usize)
        .spool(dir.0.join("spool"))
        .build()
        .unwrap();
    try_send_all(&client, 0, N, QUEUE);
    let s = client.stats();
    assert_eq!((s.accepted, s.refused_full), (N, 0), "{s:?}");
    // The agent reads 4 MiB/s; the producer went faster, and the spool took the rest.
    assert!(s.spooled > 0, "{s:?}");
    agent.set_read_rate(None);
    let (first, _dups) = wait_for_all(&agent, N);
    assert_consecutive(&first, 0, N);
    client.flush(PATIENCE).unwrap();
    let report = client.close(PATIENCE);
    assert_eq!(report.delivered, N);
}

#[test]
fn an_agent_crashing_while_the_spool_drains_loses_nothing() {
    const N: u64 = 20_000;
    let dir = TempDir::new("spool-crash");
    let client = builder()
        .unix_socket(dir.socket())
        .queue_capacity(1_000)
        .spool(dir.0.join("spool"))
        .build()
        .unwrap();
    try_send_all(&client, 0, N, 1_000);
    wait_until("everything spooled", || client.stats().spooled == N);
    // The agent crashes each time it has read another 3,000 frames: what it had taken
    // from the kernel counts as received, the rest of its socket buffer is lost.
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let mut arrived = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut crashes = 0;
    while (seen.len() as u64) < N {
        let status = agent
            .wait_for("3,000 more frames, or the rest", PATIENCE, |s| {
                s.frames >= 3_000 || (seen.len() + s.frames) as u64 >= N
            })
            .unwrap_or_else(|e| panic!("{e}; {:?}", client.stats()));
        let frames = seqs(&agent.take_frames());
        seen.extend(frames.iter().copied());
        arrived.extend(frames);
        if status.frames >= 3_000 && (seen.len() as u64) < N {
            agent.kill();
            agent.restart().unwrap();
            crashes += 1;
        }
    }
    let (first, dups) = first_arrivals(&arrived, &mut std::collections::HashSet::new());
    assert_consecutive(&first, 0, N);
    assert!(crashes >= 3, "{crashes} crashes");
    client.flush(PATIENCE).unwrap();
    let report = client.close(PATIENCE);
    assert_eq!(report.delivered, N);
    assert_eq!(report.stats.spool_bytes, 0);
    eprintln!("{dups} duplicates over {crashes} crashes");
}

#[test]
fn a_damaged_spool_sends_its_good_frames_and_names_the_file_it_set_aside() {
    let dir = TempDir::new("spool-damaged");
    let spool = dir.0.join("spool");
    // No agent: close keeps all fifty in the spool.
    let client = builder()
        .unix_socket(dir.socket())
        .spool(&spool)
        .build()
        .unwrap();
    send_range(&client, 0, 50);
    let report = client.close(Duration::from_millis(200));
    assert_eq!(report.spooled, 50, "{report:?}");
    // A byte flipped in the middle of the segment.
    let segment = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder()
        .unix_socket(dir.socket())
        .spool(&spool)
        .build()
        .unwrap();
    let events = client.notifications();
    send_range(&client, 50, 10);
    client.flush(PATIENCE).unwrap();
    let report = client.close(PATIENCE);
    assert_eq!(report.delivered, 10, "{report:?}");
    let moved = events
        .try_iter()
        .find_map(|n| match n.event {
            geneva_audit::Event::Spool(geneva_audit::SpoolNotice::SetAside {
                path,
                moved_to,
                ..
            }) => Some((path, moved_to)),
            _ => None,
        })
        .expect("a SetAside notice");
    assert_eq!(moved.0, segment);
    // Renamed, never deleted.
    assert_eq!(std::fs::read(&moved.1).unwrap(), bytes);
    assert_eq!(report.stats.spool_corrupt, 1);
    // The frames before the damage, in order, then the new records. Delivered means the
    // agent's socket was read; the test agent decodes after that, so wait for the last.
    wait_until("the last record decoded", || {
        seqs(&agent.frames()).contains(&59)
    });
    let (first, _) = first_arrivals(&seqs(&agent.frames()), &mut HashSet::new());
    let good = first.iter().take_while(|&&s| s < 50).count() as u64;
    assert!(good > 0 && good < 50, "{first:?}");
    assert_consecutive(&first[..good as usize], 0, good);
    assert_consecutive(&first[good as usize..], 50, 60);
}

/// Builds a client on `spool`, which must fail with `SpoolUnusable` naming it; returns
/// the error's text.
fn unusable(dir: &TempDir, spool: &std::path::Path) -> String {
    let built = builder().unix_socket(dir.socket()).spool(spool).build();
    match built {
        Err(e @ geneva_audit::BuildError::SpoolUnusable { .. }) => {
            let geneva_audit::BuildError::SpoolUnusable { path, .. } = &e else {
                unreachable!()
            };
            assert_eq!(path, spool);
            assert!(std::error::Error::source(&e).is_some());
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("cannot use {} as the spool: ", spool.display())),
                "{text}"
            );
            text
        }
        Ok(_) => panic!("a client was built on {}", spool.display()),
        Err(e) => panic!("expected SpoolUnusable, got {e:?}"),
    }
}

#[test]
fn a_spool_directory_that_cannot_be_used_fails_the_build_naming_it() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = TempDir::new("spool-unusable");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o7777;

    // A file where the directory should be: left as it is.
    let file = dir.0.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let text = unusable(&dir, &file);
    assert!(text.contains("is not a directory"), "{text}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    // A directory that cannot be made: its parent is a file.
    let under_file = file.join("spool");
    let text = unusable(&dir, &under_file);
    assert!(
        text.contains("cannot create the spool directory") && text.contains("Not a directory"),
        "{text}"
    );

    // Others can write to it: refused and not changed.
    let open_to_all = dir.0.join("open");
    std::fs::create_dir(&open_to_all).unwrap();
    std::fs::set_permissions(&open_to_all, std::fs::Permissions::from_mode(0o777)).unwrap();
    let text = unusable(&dir, &open_to_all);
    assert!(
        text.contains("mode 0777") && text.contains("can be written by every user"),
        "{text}"
    );
    assert_eq!(mode(&open_to_all), 0o777);
    assert_eq!(std::fs::read_dir(&open_to_all).unwrap().count(), 0);

    // Another user's (the tests run as root, to chown it).
    let others = dir.0.join("others");
    std::fs::create_dir(&others).unwrap();
    std::fs::set_permissions(&others, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&others, Some(65534), None)
        .expect("chown needs root: this test runs as root");
    let text = unusable(&dir, &others);
    assert!(text.contains("is owned by uid 65534"), "{text}");
    assert_eq!(std::fs::metadata(&others).unwrap().uid(), 65534);

    // A spool of a newer format: left as it is.
    let newer = dir.0.join("newer");
    std::fs::create_dir(&newer).unwrap();
    std::fs::set_permissions(&newer, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut header = b"GAUDSPL\0".to_vec();
    header.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    let segment = newer.join("0000000100000000.seg");
    std::fs::write(&segment, &header).unwrap();
    let text = unusable(&dir, &newer);
    assert!(
        text.contains("format version 2") && text.contains(&segment.display().to_string()),
        "{text}"
    );
    assert_eq!(std::fs::read(&segment).unwrap(), header);
}
