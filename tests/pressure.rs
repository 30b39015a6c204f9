//! The client on a starved machine: processes the test starts keep every core
//! busy while the agent drops the connection again and again. A busy machine whose agent
//! restarts is the ordinary case in production: the client must neither give up nor
//! lose a record, and must leave no descriptor or thread behind.

mod common;

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Instant;

use common::*;
use geneva_audit::Event;
use geneva_audit::agent::TestAgent;

/// Longest the spinning processes run, whatever happens to the test.
const PRESSURE_FOR: &str = "120";

/// Processes that spin on every core until dropped (or `PRESSURE_FOR` seconds pass):
/// shell loops (`while :; do :; done`), a process each. (Spinning threads of this process
/// starve the client's threads less: the scheduler shares the cores among them.)
struct Pressure {
    spinners: Vec<Child>,
}

impl Pressure {
    fn per_core(n: usize) -> Pressure {
        let cores = thread::available_parallelism().map_or(2, |n| n.get());
        let spinners = (0..cores * n)
            .map(|_| {
                Command::new("timeout")
                    .args([PRESSURE_FOR, "sh", "-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("timeout and sh")
            })
            .collect();
        Pressure { spinners }
    }

    fn count(&self) -> usize {
        self.spinners.len()
    }
}

impl Drop for Pressure {
    fn drop(&mut self) {
        for child in &mut self.spinners {
            // SIGTERM, which `timeout` passes on to its shell.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

fn our_threads() -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with("geneva-audit") || n.starts_with("test-agent"))
        .count()
}

#[test]
fn agent_churn_on_a_starved_machine_neither_kills_the_client_nor_loses_a_record() {
    let crashes: u64 = if cfg!(debug_assertions) { 150 } else { 300 };
    let disconnects: u64 = if cfg!(debug_assertions) { 300 } else { 1000 };
    let records: u64 = if cfg!(debug_assertions) {
        20_000
    } else {
        60_000
    };
    let dir = TempDir::new("pressure");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    wait_until("the agent's accept thread", || our_threads() >= 1);
    let (fds_before, threads_before) = (open_fds(), our_threads());
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let notifications = client.notifications();
    let started = Instant::now();
    let pressure = Pressure::per_core(2);
    let spinners = pressure.count();
    // First the agent closes the connection after reading each burst, a thousand
    // times: the reconnections come as fast as the client makes them, and so do the
    // closes of the broken connections.
    let mut arrived = Vec::new();
    for round in 0..disconnects {
        let from = round * 10;
        for i in from..from + 10 {
            client.try_send(record(i)).unwrap();
        }
        client
            .flush(PATIENCE)
            .unwrap_or_else(|e| panic!("flush in round {round}: {e:?} {:?}", client.stats()));
        // Let the agent read it (its close discards what it has not read).
        while !arrived.iter().rev().take(20).any(|&s| s == from + 9) {
            agent
                .wait_for("the burst's last record", PATIENCE, |s| s.frames > 0)
                .unwrap();
            arrived.extend(seqs(&agent.take_frames()));
        }
        agent.disconnect_all();
    }
    // Then it crashes as soon as it has read anything on a connection, again and again,
    // while a sender sends.
    let sender = {
        let client = client.clone();
        let from = disconnects * 10;
        thread::spawn(move || send_range(&client, from, records - from))
    };
    for _ in 0..crashes {
        agent
            .wait_for("a frame on the new connection", PATIENCE, |s| s.frames > 0)
            .unwrap_or_else(|e| panic!("{e}; {:?}", client.stats()));
        arrived.extend(seqs(&agent.take_frames()));
        agent.kill();
        agent.restart().unwrap();
    }
    sender.join().unwrap();
    client
        .flush(PATIENCE)
        .unwrap_or_else(|e| panic!("flush: {e:?} {:?}", client.stats()));
    drop(pressure);
    let took = started.elapsed();
    let report = client.close(PATIENCE);
    drop(client);
    let events: Vec<Event> = notifications.try_iter().map(|n| n.event).collect();
    let died = events
        .iter()
        .find(|e| matches!(e, Event::ClientDead { .. }));
    assert!(died.is_none(), "the client gave up: {died:?}");
    let mut seen = std::collections::HashSet::new();
    arrived.extend(seqs(&agent.take_frames()));
    let (first, dups) = first_arrivals(&arrived, &mut seen);
    if first.len() as u64 != records {
        let missing: Vec<u64> = (0..records).filter(|n| !seen.contains(n)).collect();
        let around = |n: u64| {
            arrived
                .iter()
                .enumerate()
                .filter(|(_, s)| **s + 3 >= n && **s <= n + 3)
                .map(|(at, s)| (at, *s))
                .collect::<Vec<_>>()
        };
        let (lo, hi) = (missing[0], missing[missing.len() - 1]);
        panic!(
            "{} records missing, {lo}..={hi}; around the first: {:?}; around the last: {:?}; {:?}",
            missing.len(),
            around(lo),
            around(hi),
            report.stats
        );
    }
    assert_consecutive(&first, 0, records);
    assert!(report.clean, "{report:?}");
    agent
        .wait_for("no open connection", PATIENCE, |s| s.open_connections == 0)
        .unwrap();
    let fds_back = wait_until_within(PATIENCE, || open_fds() <= fds_before);
    let threads_back = wait_until_within(PATIENCE, || our_threads() <= threads_before);
    println!(
        "[pressure] {disconnects} disconnects and {crashes} agent crashes under {} spinning processes in {took:.1?}: {records} \
         records, {dups} duplicates, {} connects; descriptors {fds_before} before, {} after; \
         threads {threads_before} before, {} after",
        spinners,
        report.stats.connects,
        open_fds(),
        our_threads(),
    );
    assert!(
        fds_back,
        "descriptors leaked: {fds_before} before, {}",
        open_fds()
    );
    assert!(
        threads_back,
        "threads leaked: {threads_before} before, {}",
        our_threads()
    );
}
