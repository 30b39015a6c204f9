//! Agent crashes and restarts: nothing accepted is lost, records the agent never read
//! are written again (the unread-tail replay), and cut frames arrive whole.

mod common;

use std::time::Duration;

use common::*;
use geneva_audit::agent::TestAgent;
use geneva_audit::{Event, LossReason};

/// Sends 200 records to an agent that reads none of them, starts a flush, kills the
/// agent while the flush waits (the kernel discards what it had not read), restarts it
/// and sends one more: returns the records the new agent received, the stats, and the
/// losses notified (`RecordsLost`: count and reason).
fn crash_with_unread_data(replay: bool) -> (Vec<u64>, geneva_audit::Stats, Vec<(u64, LossReason)>) {
    let (_dir, agent, client) = stalled_with("unread", |b| b.replay_unread(replay));
    let notifications = client.notifications();
    send_range(&client, 0, 200);
    wait_until("everything written", || {
        client.stats().written == 200 + OPENING
    });
    assert_eq!(
        client.stats().delivered,
        1,
        "only the opening record was read"
    );
    // A flush waiting for the 201 unread records when the agent dies.
    let name = if replay {
        "flush-replay"
    } else {
        "flush-noreplay"
    };
    let flusher = {
        let client = client.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || client.flush(PATIENCE))
            .unwrap()
    };
    wait_until("the flush to wait", || thread_state(name) == Some('S'));
    agent.kill();
    agent.take_frames();
    agent.resume_reading();
    agent.restart().unwrap();
    let flushed = flusher.join().unwrap();
    if replay {
        // Written again on the new connection, and read there.
        assert_eq!(flushed, Ok(()));
    } else {
        // The flush hears of the losses while it waits.
        assert_eq!(flushed, Err(geneva_audit::FlushError::Lost { count: 201 }));
    }
    send_range(&client, 200, 1);
    client.flush(PATIENCE).unwrap();
    let want = if replay { 201 } else { 1 };
    agent
        .wait_for("the records after the crash", PATIENCE, |s| s.frames > want)
        .unwrap();
    let stats = client.close(PATIENCE).stats;
    // The stream ends at close: everything told is here.
    let losses = notifications
        .try_iter()
        .filter_map(|n| match n.event {
            Event::RecordsLost { count, reason } => Some((count, reason)),
            _ => None,
        })
        .collect();
    (seqs(&agent.frames()), stats, losses)
}

#[test]
fn agent_restarted_between_bursts_loses_nothing_of_the_next_burst() {
    let dir = TempDir::new("restart");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let notifications = client.notifications();
    let mut seen = std::collections::HashSet::new();
    for round in 0..3u64 {
        let from = round * 100;
        send_range(&client, from, 100);
        client.flush(PATIENCE).unwrap();
        wait_until("the burst's last record", || {
            seqs(&agent.frames()).contains(&(from + 99))
        });
        let frames = agent.take_frames();
        // The new connection may begin with records of the last burst that the client
        // could not know were read (the unread-tail replay): duplicates, never gaps.
        let (first, dups) = first_arrivals(&seqs(&frames), &mut seen);
        assert_consecutive(&first, from, from + 100);
        assert!(frames.iter().all(|f| f.connection == round));
        println!("round {round}: {dups} duplicates replayed");
        // Between bursts, kill the agent (the socket file goes away) and bring it back.
        // (Not after the last: the client could notice that death at any moment, and
        // the counters below would race with it.)
        if round < 2 {
            agent.kill();
            agent.restart().unwrap();
        }
    }
    let stats = client.stats();
    let events: Vec<Event> = notifications.try_iter().map(|n| n.event).collect();
    // Each of the two deaths ended the connection, found by a write (a write error) or
    // by the idle writer's look at the socket (the agent left having read everything),
    // and the records went again on a new connection.
    let left = events
        .iter()
        .filter(|e| matches!(e, Event::AgentLeft { .. }))
        .count();
    let ends = stats.write_errors + left as u64;
    assert!((2..=4).contains(&ends), "{left} times left, {stats:?}");
    assert_eq!(stats.connects, 3);
    assert_eq!(stats.written, 300);
    // The first connection is announced as such, the two after it as reconnections.
    let reconnects: Vec<bool> = events
        .iter()
        .filter_map(|e| match e {
            Event::Connected { reconnect, .. } => Some(*reconnect),
            _ => None,
        })
        .collect();
    assert_eq!(reconnects, [false, true, true]);
    client.close(PATIENCE);
}

#[test]
fn agent_killed_mid_burst_loses_nothing() {
    let dir = TempDir::new("mid-burst");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    const N: u64 = 20_000;
    let sender = {
        let client = client.clone();
        std::thread::spawn(move || send_range(&client, 0, N))
    };
    agent
        .wait_for("some frames", PATIENCE, |s| s.total_frames >= 2_000)
        .unwrap();
    agent.kill();
    let old = agent.take_frames();
    agent.restart().unwrap();
    sender.join().unwrap();
    client.flush(PATIENCE).unwrap();
    wait_until("the last record", || {
        seqs(&agent.frames()).last() == Some(&(N - 1))
    });
    let new = agent.frames();
    let mut seen = std::collections::HashSet::new();
    // What the dead agent read is a prefix, in order.
    let (old_first, _) = first_arrivals(&seqs(&old), &mut seen);
    assert_consecutive(&old_first, 0, old_first.len() as u64);
    // The new connection starts with what the dead agent may not have read (the replay)
    // and then every later record: nothing is missing and first arrivals keep order.
    let (new_first, dups) = first_arrivals(&seqs(&new), &mut seen);
    assert_consecutive(&new_first, old_first.len() as u64, N);
    let stats = client.close(PATIENCE).stats;
    println!(
        "killed after {} frames read; {} replayed, {dups} of them already read",
        old_first.len(),
        stats.replayed
    );
    assert_eq!((stats.accepted, stats.written, stats.lost), (N, N, 0));
}

#[test]
fn records_the_crashed_agent_never_read_are_written_again() {
    let (received, stats, losses) = crash_with_unread_data(true);
    assert_eq!(losses, []);
    assert_consecutive(&received, 0, 201);
    // The 200 and the opening record the agent had not finished reading.
    assert_eq!(stats.replayed, 201);
    // Counted once each: the replay is not a second write in the counters.
    let n = 201 + OPENING;
    assert_eq!((stats.accepted, stats.written, stats.lost), (n, n, 0));
    assert_eq!(stats.delivered, n);
}

#[test]
fn without_the_replay_a_crash_loses_what_the_agent_had_not_read_and_says_so() {
    let (received, stats, losses) = crash_with_unread_data(false);
    assert_eq!(received, [200]);
    assert_eq!(stats.replayed, 0);
    // Never counted delivered: lost, and said so, once, as not read.
    assert_eq!((stats.delivered, stats.lost), (2, 201));
    assert_eq!(losses, [(201, LossReason::NotRead)]);
}

#[test]
fn an_agent_dying_while_the_client_is_idle_gets_its_unread_records_again() {
    let (_dir, agent, client) = stalled_with("idle-death", |b| b);
    send_range(&client, 0, 300);
    wait_until("everything written", || {
        client.stats().written == 300 + OPENING
    });
    agent.kill();
    agent.resume_reading();
    agent.restart().unwrap();
    // No further record: the idle writer finds the peer gone on its own. (The frames the
    // agent's reader took before it was paused stay with the killed agent, and come
    // again with the replay.)
    wait_until("the unread records, replayed", || {
        seqs(&agent.frames()).last() == Some(&299)
    });
    let mut seen = std::collections::HashSet::new();
    let (first, _) = first_arrivals(&seqs(&agent.frames()), &mut seen);
    assert_consecutive(&first, 0, 300);
    let s = client.close(PATIENCE).stats;
    let n = 300 + OPENING;
    assert_eq!((s.accepted, s.written, s.delivered, s.lost), (n, n, n, 0));
    assert!(s.replayed > 300, "{s:?}");
}

#[test]
fn a_frame_cut_by_a_failure_is_written_whole_on_the_next_connection() {
    // A small send buffer, a short write timeout and a 200 KB record: the socket takes
    // part of the frame, and the write times out waiting for the agent to read the rest.
    let (_dir, agent, client) = stalled_with("cut-frame", |b| {
        b.send_buffer_size(Some(4096))
            .write_timeout(Duration::from_millis(200))
            .wait_for_connection(true)
    });
    let big = record(7).custom("blob", "x".repeat(200_000));
    client.try_send(big).unwrap();
    wait_until("a frame cut by the timeout", || client.stats().retried >= 1);
    // The agent dies with the cut frames unread, and comes back reading.
    agent.kill();
    agent.resume_reading();
    agent.restart().unwrap();
    client.flush(PATIENCE).unwrap();
    // The frame arrives whole, and once: it decodes, and no other record came (the
    // opening record the stalled agent had not finished reading may come first).
    wait_until("record 7", || seqs(&agent.frames()) == [7]);
    // Nothing cut reached the agent: every connection carried whole frames only.
    assert_eq!(agent.errors(), []);
    let s = client.close(PATIENCE).stats;
    assert!(s.retried >= 1 && s.write_errors >= 1, "{s:?}");
    assert_eq!((s.written, s.lost), (1 + OPENING, 0));
    assert!(agent.frames().iter().filter(|f| seq(f).is_some()).count() == 1);
}
