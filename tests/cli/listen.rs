//! `listen`: a test agent printing what it receives.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use geneva_audit::Client;
use serde_json::Value as Json;

use crate::common::{self, PATIENCE, STI, TempDir};
use crate::{BIN, Killed, run, text};

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
    let mut pause = common::Pause::new();
    while !socket.exists() {
        assert!(child.0.try_wait().unwrap().is_none(), "listen exited early");
        assert!(
            Instant::now() < deadline,
            "no socket file after {PATIENCE:?}"
        );
        pause.next();
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

/// Starts `listen` on `socket` and waits until the socket file is there.
fn start_listen(socket: &Path, stdout: Stdio) -> Killed {
    let mut child = Killed(
        Command::new(BIN)
            .args(["listen", "--unix", socket.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .expect("start geneva-audit listen"),
    );
    let deadline = Instant::now() + PATIENCE;
    let mut pause = common::Pause::new();
    while !socket.exists() {
        assert!(child.0.try_wait().unwrap().is_none(), "listen exited early");
        assert!(
            Instant::now() < deadline,
            "no socket file after {PATIENCE:?}"
        );
        pause.next();
    }
    child
}

#[test]
fn listen_removes_its_socket_on_sigterm_and_sigint() {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let dir = TempDir::new("cli-listen-signal");
        let socket = dir.socket();
        let mut child = start_listen(&socket, Stdio::null());
        let pid = i32::try_from(child.0.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid, which we have not waited for yet.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
        let status = common::wait_within(&mut child.0, PATIENCE);
        assert_eq!(status.code(), Some(0), "signal {signal}");
        assert!(
            !socket.exists(),
            "signal {signal} left {}",
            socket.display()
        );
    }
}

#[test]
fn listen_names_the_path_when_it_cannot_listen() {
    let dir = TempDir::new("cli-listen-error");
    let not_a_socket = dir.0.join("file");
    std::fs::write(&not_a_socket, b"x").unwrap();
    let path = not_a_socket.to_str().unwrap();
    let out = run(&["listen", "--unix", path], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("cannot listen on {path}: ")),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn listen_stops_reading_while_its_output_is_blocked() {
    let dir = TempDir::new("cli-listen-backpressure");
    let socket = dir.socket();
    // Nobody reads listen's stdout until the client has had its chance to overrun it.
    let mut child = start_listen(&socket, Stdio::piped());
    let client = Client::builder(STI)
        .unix_socket(&socket)
        .queue_capacity(40_000)
        .build()
        .unwrap();
    let n = 20_000u64;
    for i in 0..n {
        client.try_send(common::record(i)).unwrap();
    }
    // Far more than a pipe and two socket buffers hold: listen must stop taking them.
    // Wait until the kernel shows the client's writer blocked in a write to listen's
    // socket (the socket buffers are full: listen stopped reading), or everything was
    // delivered (it did not).
    common::wait_until("listen to stop reading", || {
        client.stats().delivered >= n || common::writer_blocked_writing_to(&socket)
    });
    let delivered = client.stats().delivered;
    assert!(
        delivered < n,
        "listen read every record while its stdout was blocked"
    );
    assert!(
        delivered < n / 2,
        "{delivered} of {n} read with stdout blocked"
    );

    let mut stdout = child.0.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        while lines < n {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => lines += buf[..k].iter().filter(|&&b| b == b'\n').count() as u64,
            }
        }
        lines
    });
    client
        .flush(PATIENCE)
        .expect("everything written once stdout is read");
    let report = client.close(PATIENCE);
    assert!(report.unsent.is_empty());
    // n records and at least one heartbeat line.
    assert!(reader.join().unwrap() >= n);
}
