//! `send`: records from stdin to the agent.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use geneva_audit::agent::TestAgent;
use serde_json::Value as Json;

use crate::common::{PATIENCE, STI, TempDir};
use crate::{OTHER_STI, input, invalid_line, line_with_id, non_utf8_line, run, text, valid_line};

#[test]
fn send_delivers_valid_lines_in_order_and_names_the_invalid_one() {
    let dir = TempDir::new("cli-send");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let input = format!(
        "{}\n{}\n{}\n{}\n",
        valid_line("op-1"),
        valid_line("op-2"),
        invalid_line(),
        valid_line("op-3")
    );
    let socket = dir.socket();
    let out = run(&["send", "--unix", socket.to_str().unwrap()], &input);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 3: at least one operation category is required"),
        "{stderr}"
    );
    assert!(
        stderr.contains("3 records delivered, 0 records not delivered"),
        "{stderr}"
    );

    // close() handed everything to the socket before the process exited; the agent may
    // still be reading it: three records and a heartbeat.
    let frames: Vec<_> = agent
        .wait_for_frames(4, PATIENCE)
        .unwrap()
        .into_iter()
        .filter(|f| f.tag == "AsmAuditDP" || f.tag == "AsmAuditCP")
        .collect();
    let names: Vec<&str> = frames
        .iter()
        .map(|f| f.body_str("OperationName").unwrap())
        .collect();
    assert_eq!(names, ["op-1", "op-2", "op-3"]);
    assert!(frames.iter().all(|f| f.body_str("env_ikey") == Some(STI)));
}

#[test]
fn send_without_a_service_tree_id_fails() {
    let dir = TempDir::new("cli-send-noid");
    let mut v: Json = serde_json::from_str(&valid_line("a")).unwrap();
    v["record"].as_object_mut().unwrap().remove("env_ikey");
    let socket = dir.socket();
    let out = run(
        &["send", "--unix", socket.to_str().unwrap()],
        format!("{v}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no service tree id"));
}

/// The operation names of the record frames an agent received, once it has `n` of them.
fn received_names(agent: &TestAgent, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let names: Vec<String> = agent
            .frames()
            .iter()
            .filter(|f| f.tag == "AsmAuditDP" || f.tag == "AsmAuditCP")
            .filter_map(|f| f.body_str("OperationName").map(str::to_owned))
            .collect();
        if names.len() >= n {
            return names;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {names:?} after {PATIENCE:?}"
        );
        let _ = agent.wait_for("more frames", PATIENCE / 10, |s| s.frames > names.len());
    }
}

#[test]
fn send_judges_the_first_line_like_any_other() {
    let dir = TempDir::new("cli-send-first");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let socket = dir.socket();
    let lines = [
        b"{not json".to_vec(),
        valid_line("op-1").into_bytes(),
        valid_line("op-2").into_bytes(),
    ];
    let out = run(&["send", "--unix", socket.to_str().unwrap()], input(&lines));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 1: not valid JSON"), "{stderr}");
    assert!(!stderr.contains("at line 1 column"), "{stderr}");
    assert_eq!(received_names(&agent, 2), ["op-1", "op-2"]);
}

#[test]
fn send_refuses_invalid_utf8_and_a_different_service_tree_id() {
    let dir = TempDir::new("cli-send-utf8");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let socket = dir.socket();
    let other = line_with_id("op-other", OTHER_STI);
    let lines = [
        valid_line("op-1").into_bytes(),
        non_utf8_line("op-bad"),
        other.into_bytes(),
        valid_line("op-2").into_bytes(),
    ];
    let out = run(&["send", "--unix", socket.to_str().unwrap()], input(&lines));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 2: not valid UTF-8"), "{stderr}");
    assert!(
        stderr.contains(&format!("line 3: record.env_ikey {OTHER_STI:?} differs")),
        "{stderr}"
    );
    assert_eq!(received_names(&agent, 2), ["op-1", "op-2"]);
    let records = agent.frames().into_iter().filter(|f| f.tag != "AsmAuditHB");
    assert!(
        records
            .into_iter()
            .all(|f| f.body_str("env_ikey") == Some(STI))
    );
}

fn summary(out: &std::process::Output) -> Json {
    let stdout = text(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout:?}"))
}

/// Also long enough for one plain progress line (every 5 s when stderr is no terminal).
#[test]
fn send_to_a_missing_socket_names_it_and_gives_up_after_the_timeout() {
    let dir = TempDir::new("cli-send-missing");
    let socket = dir.socket();
    let path = socket.to_str().unwrap();
    let started = Instant::now();
    let out = run(
        &["send", "--unix", path, "--timeout", "6", "--json"],
        format!("{}\n", valid_line("op-1")),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(&format!(
            "cannot connect to unix:{path}: No such file or directory (os error 2)"
        )),
        "{stderr}"
    );
    // Said once, then counted, however often the client retried.
    assert_eq!(stderr.matches("cannot connect").count(), 2, "{stderr}");
    assert!(
        stderr.contains(
            "geneva-audit: 1 line read, 0 records delivered, 0 lines refused, 0 records/s"
        ),
        "{stderr}"
    );
    let s = summary(&out);
    assert_eq!(s["delivered"], 0);
    assert_eq!(s["handed_back"], 1);
    assert!(s["stopped"].as_str().unwrap().contains("--timeout"), "{s}");
}

#[test]
fn send_summary_as_json() {
    let dir = TempDir::new("cli-send-json");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    let socket = dir.socket();
    let lines = [valid_line("op-1"), invalid_line(), valid_line("op-2")];
    let out = run(
        &["send", "--unix", socket.to_str().unwrap(), "--json"],
        input(&lines),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let s = summary(&out);
    assert_eq!(s["lines"], 3);
    assert_eq!(s["refused"], 1);
    assert_eq!(s["delivered"], 2);
    assert_eq!(s["handed_back"], 0);
    assert_eq!(s["stopped"], Json::Null);
    assert_eq!(s["success"], false);
    assert_eq!(received_names(&agent, 2), ["op-1", "op-2"]);

    let out = run(
        &["send", "--unix", socket.to_str().unwrap(), "--json"],
        input(&[valid_line("op-3")]),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["success"], true);
}

#[test]
fn send_gives_up_on_an_agent_that_never_reads_and_the_unsent_file_resends() {
    let dir = TempDir::new("cli-send-stuck");
    let agent = TestAgent::unix(dir.socket()).unwrap();
    agent.stop_reading();
    let socket = dir.socket();
    let unsent = dir.0.join("unsent.jsonl");
    let names: Vec<String> = (0..10_000).map(|i| format!("op-{i}")).collect();
    // Each line its own event time, which must survive the hand-back and the resend.
    let lines: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut v: Json = serde_json::from_str(&valid_line(n)).unwrap();
            v["ts"] = Json::from(FIRST_TS + i as i64);
            v.to_string()
        })
        .collect();
    let started = Instant::now();
    let out = run(
        &[
            "send",
            "--unix",
            socket.to_str().unwrap(),
            "--timeout",
            "1",
            "--close-timeout",
            "1",
            "--unsent",
            unsent.to_str().unwrap(),
            "--json",
        ],
        input(&lines),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}: {stderr}",
        started.elapsed()
    );
    let s = summary(&out);
    assert!(
        s["stopped"]
            .as_str()
            .unwrap()
            .contains("no record was delivered"),
        "{s}"
    );
    let handed_back = s["handed_back"].as_u64().unwrap();
    assert!(handed_back > 0, "{s}");
    // Some sit unread in the agent's socket: the summary says they may arrive twice.
    let written = s["written_unconfirmed"].as_u64().unwrap();
    assert!(written > 0 && written <= handed_back, "{s}");
    let kept = std::fs::read_to_string(&unsent).unwrap();
    assert_eq!(kept.lines().count() as u64, handed_back);

    // The agent reads again; the file goes back through the same command.
    agent.resume_reading();
    let out = run(
        &["send", "--unix", socket.to_str().unwrap(), "--json"],
        kept.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let arrived: BTreeSet<String> = received_names(&agent, names.len()).into_iter().collect();
    let expected: BTreeSet<String> = names.into_iter().collect();
    assert_eq!(arrived, expected);
    for frame in agent.frames().iter().filter(|f| f.tag != "AsmAuditHB") {
        let name = frame.body_str("OperationName").unwrap();
        let i: i64 = name.trim_start_matches("op-").parse().unwrap();
        assert_eq!(frame.ts, FIRST_TS + i, "{name}");
    }
}

const FIRST_TS: i64 = 1_600_000_000;

/// An agent that exits once it has read every record is not a failure of the
/// send. The receiver here decodes frames with rmpv, counts the records, and closes its
/// end (listener and connection) the moment it has them all.
#[test]
fn send_to_an_agent_that_leaves_after_reading_everything_reports_no_failure() {
    const N: usize = 5_000;
    let dir = TempDir::new("cli-send-leaves");
    let socket = dir.socket();
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let receiver = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut records = 0;
        while records < N {
            let frame = rmpv::decode::read_value(&mut reader).unwrap();
            let tag = frame
                .as_array()
                .and_then(|a| a.first())
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_owned();
            if tag == "AsmAuditDP" || tag == "AsmAuditCP" {
                records += 1;
            }
        }
        records
    });
    let input: String = (0..N)
        .map(|i| valid_line(&format!("op-{i}")) + "\n")
        .collect();
    let out = run(&["send", "--unix", socket.to_str().unwrap()], &input);
    let stderr = text(&out.stderr);
    assert_eq!(receiver.join().unwrap(), N);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("{N} records delivered, 0 records not delivered")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("failed") && !stderr.contains("closed the connection"),
        "a false alarm after success: {stderr}"
    );
}
