//! The agent's default socket: chosen anew at each connection attempt, the ASA socket
//! first, so a client follows an agent that moves to it.

mod common;

use std::path::PathBuf;

use common::*;
use geneva_audit::Transport;
use geneva_audit::agent::TestAgent;

/// The ASA socket and the usual one in `dir`, the ASA directory created.
fn sockets(dir: &TempDir) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir.0.join("asa")).unwrap();
    (
        dir.0.join("asa/default_fluent.socket"),
        dir.0.join("default_fluent.socket"),
    )
}

#[test]
fn with_both_sockets_there_the_asa_one_is_used() {
    let dir = TempDir::new("both-sockets");
    let (asa, usual) = sockets(&dir);
    let usual_agent = TestAgent::unix(&usual).unwrap();
    let asa_agent = TestAgent::unix(&asa).unwrap();
    let client = builder()
        .transport(Transport::AgentDir(dir.0.clone()))
        .build()
        .unwrap();
    send_range(&client, 0, 10);
    client.flush(PATIENCE).unwrap();
    let frames = asa_agent.wait_for_frames(11, PATIENCE).unwrap();
    assert_consecutive(&seqs(&frames), 0, 10);
    let heartbeat = frames.iter().find(|f| f.tag == "AsmAuditHB").unwrap();
    assert_eq!(heartbeat.body_str("Destination"), Some("UnixDomainSocket"));
    assert!(usual_agent.frames().is_empty());
    assert_eq!(usual_agent.status().connections, 0);
    client.close(PATIENCE);
}

#[test]
fn an_agent_moving_to_the_asa_socket_is_followed_while_records_flow() {
    const N: u64 = 5_000;
    let dir = TempDir::new("moving-agent");
    let (asa, usual) = sockets(&dir);
    let old = TestAgent::unix(&usual).unwrap();
    let client = builder()
        .transport(Transport::AgentDir(dir.0.clone()))
        .build()
        .unwrap();
    let sender = {
        let client = client.clone();
        std::thread::spawn(move || send_range(&client, 0, N))
    };
    old.wait_for("some frames", PATIENCE, |s| s.total_frames >= 500)
        .unwrap();
    // The agent comes up on the ASA socket and leaves the usual one.
    let new = TestAgent::unix(&asa).unwrap();
    old.kill();
    sender.join().unwrap();
    client.flush(PATIENCE).unwrap();
    wait_until("the last record at the ASA socket", || {
        seqs(&new.frames()).last() == Some(&(N - 1))
    });
    // Nothing is missing: what the old agent read, then the rest at the new one (with
    // the replay of what the old one may not have read), first arrivals in order.
    let mut seen = std::collections::HashSet::new();
    let (old_first, _) = first_arrivals(&seqs(&old.frames()), &mut seen);
    assert_consecutive(&old_first, 0, old_first.len() as u64);
    let (new_first, _) = first_arrivals(&seqs(&new.frames()), &mut seen);
    assert_consecutive(&new_first, old_first.len() as u64, N);
    assert!(!new_first.is_empty());
    let s = client.close(PATIENCE).stats;
    assert_eq!((s.accepted, s.lost), (N, 0));
}
