//! `listen`: a test agent printing what it receives.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use geneva_audit::Client;
use serde_json::Value as Json;

use crate::common::{self, PATIENCE, STI, TempDir};
use crate::{BIN, Killed};

#[test]
fn listen_prints_received_frames_as_json() {
    let dir = TempDir::new("cli-listen");
    let socket = dir.socket();
    let mut child = Killed(
        Command::new(BIN)
            .args(["listen", "--unix", socket.to_str().unwrap(), "--flatten"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start geneva-audit listen"),
    );

    let deadline = Instant::now() + PATIENCE;
    while !socket.exists() {
        assert!(child.0.try_wait().unwrap().is_none(), "listen exited early");
        assert!(
            Instant::now() < deadline,
            "no socket file after {PATIENCE:?}"
        );
        std::thread::yield_now();
    }

    // Read lines on a thread, so a missing line fails the test instead of hanging it.
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let client = Client::builder(STI).unix_socket(&socket).build().unwrap();
    client.try_send(common::record(1)).unwrap();
    client.try_send(common::record(2)).unwrap();
    let report = client.close(PATIENCE);
    assert!(report.unsent.is_empty());

    let mut records = Vec::new();
    while records.len() < 2 {
        let line = rx
            .recv_timeout(PATIENCE)
            .expect("a line from listen")
            .expect("readable stdout");
        let v: Json = serde_json::from_str(&line).expect("a JSON line");
        let tag = v["tag"].as_str().unwrap().to_owned();
        if tag == "AsmAuditDP" || tag == "AsmAuditCP" {
            records.push(v);
        }
    }
    assert_eq!(records[0]["tag"], "AsmAuditCP");
    assert_eq!(records[1]["tag"], "AsmAuditDP");
    for r in &records {
        assert!(r["ts"].is_i64());
        assert!(r["connection"].is_u64());
        let body = &r["body"];
        assert_eq!(body["env_ikey"], STI);
        assert_eq!(
            body["CallerIdentities.UPN.0.Identity"], "alice@contoso.com",
            "{body}"
        );
    }
}
