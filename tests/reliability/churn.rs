//! 6. Reconnect churn.

use super::*;

fn our_threads() -> usize {
    thread_names()
        .iter()
        .filter(|n| n.starts_with("geneva-audit") || n.starts_with("test-agent"))
        .count()
}

#[test]
fn a_thousand_reconnects_leak_no_descriptor_and_no_thread() {
    let _serial = serial();
    const RECONNECTS: u64 = 1000;
    let dir = TempDir::new("churn");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    // A thread names itself once it runs: wait for the agent's accept thread to.
    wait_until("the agent's accept thread", || our_threads() >= 1);
    let (fds_before, threads_before) = (open_fds(), our_threads());
    let client = builder().unix_socket(dir.socket()).build().unwrap();
    let started = Instant::now();
    let (mut peak_fds, mut peak_threads) = (0, 0);
    let mut frames = Vec::new();
    let mut sent = 0u64;
    while client.stats().connects <= RECONNECTS {
        assert!(
            sent < 3 * RECONNECTS,
            "too few reconnects: {:?}",
            client.stats()
        );
        client.try_send(record(sent)).unwrap();
        client.flush(PATIENCE).unwrap();
        // Let the agent read it (a disconnect discards unread data), then drop the
        // connection: the next write fails and the client reconnects.
        let want = sent;
        frames = collect_seqs(&agent, PATIENCE, frames, |f| {
            f.iter().rev().take(3).any(|f| seq(f) == Some(want))
        });
        sent += 1;
        // Synchronous: the connection is shut down when this returns (the client may
        // already be reconnecting, so there is no "no connection" state to wait for).
        agent.disconnect_all();
        peak_fds = peak_fds.max(open_fds());
        peak_threads = peak_threads.max(our_threads());
    }
    let took = started.elapsed();
    let report = client.close(PATIENCE);
    drop(client);
    let got = seqs(&frames);
    let (firsts, duplicates) = first_arrivals(&got);
    let mut arrivals_of: HashMap<u64, u64> = HashMap::new();
    for s in &got {
        *arrivals_of.entry(*s).or_default() += 1;
    }
    let most = arrivals_of.values().copied().max().unwrap_or(0);
    agent
        .wait_for("no open connection", PATIENCE, |s| s.open_connections == 0)
        .unwrap();
    let fds_back = wait_until_within(PATIENCE, || open_fds() <= fds_before);
    let threads_back = wait_until_within(PATIENCE, || our_threads() <= threads_before);
    let (fds_after, threads_after) = (open_fds(), our_threads());
    let s = report.stats;
    println!(
        "[reconnect churn] {} reconnects for {sent} records in {took:.1?}; open descriptors \
         {fds_before} before, peak {peak_fds}, {fds_after} after close; client and agent \
         threads {threads_before} before, peak {peak_threads}, {threads_after} after close; \
         {} write errors, {} retried, {} replayed; the agent got {} record frames ({} \
         duplicates, although each record was read before its connection was dropped; one \
         record arrived {} times)",
        s.connects - 1,
        s.write_errors,
        s.retried,
        s.replayed,
        got.len(),
        duplicates,
        most,
    );
    assert!(
        fds_back,
        "descriptors leaked: {fds_before} before, {fds_after} after"
    );
    assert!(
        threads_back,
        "threads leaked: {threads_before} before, {threads_after} after: {:?}",
        thread_names()
    );
    assert!(report.clean);
    // The last connection was dropped too: the client cannot know the agent read its
    // tail, so close hands that back (at least once) rather than count it delivered.
    assert_eq!(s.accepted, sent);
    assert_eq!(s.written + s.lost, sent);
    assert_eq!(s.lost, report.unsent.len() as u64);
    // Every record arrived, in order (each was read before its connection was dropped).
    assert_consecutive(&firsts, 0, sent);
    // And once: each was confirmed read (flush) before its connection was dropped, so
    // no new connection has anything to write again.
    assert_eq!(duplicates, 0, "one record arrived {most} times");
}
