//! The `geneva-audit` command, run as a separate process.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use common::{PATIENCE, STI, TempDir};
use geneva_audit::Client;
use geneva_audit::agent::TestAgent;
use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_geneva-audit");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Golden lines the record model cannot express although the reference validates them.
const INEXPRESSIBLE: &[&str] = &["cp_out_of_range_enums"];

fn run(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start geneva-audit");
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.to_owned();
    // Write from another thread so a child that fills its stdout pipe cannot deadlock us.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
    });
    let out = child.wait_with_output().expect("wait for geneva-audit");
    writer.join().expect("stdin writer");
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn golden_lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(Path::new(FIXTURES).join(name))
        .expect("read fixture")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Golden line 1, a valid data-plane record, with its operation name set to `name`.
fn valid_line(name: &str) -> String {
    let mut v: Json = serde_json::from_str(&golden_lines("golden.jsonl")[0]).unwrap();
    v["record"]["OperationName"] = Json::String(name.to_owned());
    v.to_string()
}

/// A record without an operation category.
fn invalid_line() -> String {
    let mut v: Json = serde_json::from_str(&golden_lines("golden.jsonl")[0]).unwrap();
    v["record"]["OperationCategories"] = Json::Array(vec![]);
    v.to_string()
}

#[test]
fn encode_matches_the_golden_hex() {
    let jsonl = golden_lines("golden.jsonl");
    let hex = golden_lines("golden.hex");
    let meta: Vec<Json> = golden_lines("golden.meta.jsonl")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(jsonl.len(), hex.len());
    assert_eq!(jsonl.len(), meta.len());

    // The golden frames were made with ts 1700000000 for lines without their own `ts`:
    // --default-ts keeps the lines' own time stamps (1234, 0, 4102444800) honest.
    let mut input = jsonl.join("\n");
    input.push('\n');
    let out = run(&["encode", "--default-ts", "1700000000"], &input);
    let stdout = text(&out.stdout);
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(got.len(), jsonl.len(), "one output line per input line");

    let mut compared = 0;
    let mut errors = 0;
    for (i, m) in meta.iter().enumerate() {
        let name = m["name"].as_str().unwrap();
        let validate = &m["record_validate"];
        let ok = validate.is_null() || validate == "ok";
        if !ok || INEXPRESSIBLE.contains(&name) {
            assert!(
                got[i].starts_with("ERROR "),
                "line {} ({name}): expected ERROR, got {}",
                i + 1,
                got[i]
            );
            errors += 1;
        } else if m["byte_exact_comparable"] == true {
            assert_eq!(got[i], hex[i], "line {} ({name})", i + 1);
            compared += 1;
        }
    }
    assert_eq!(compared, 14, "lines compared byte for byte");
    assert_eq!(errors, 3);
    assert_eq!(out.status.code(), Some(1), "some lines are ERROR");
}

#[test]
fn encode_ts_overrides_the_lines_own() {
    let line = valid_line("x");
    let out = run(&["encode", "--ts", "1234"], &format!("{line}\n"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // [tag, [[ts, ...: ts is an int64 after the tag and two array headers.
    assert!(text(&out.stdout).contains("9192d300000000000004d2"));
}

#[test]
fn check_reports_the_invalid_line() {
    let input = format!("{}\n{}\n", valid_line("a"), invalid_line());
    let out = run(&["check"], &input);
    assert_eq!(
        text(&out.stdout),
        "line 1: ok\nline 2: at least one operation category is required\n"
    );
    assert_eq!(out.status.code(), Some(1));

    let out = run(&["check"], "{not json\n");
    assert!(text(&out.stdout).starts_with("line 1: not valid JSON"));
    assert_eq!(out.status.code(), Some(1));

    let out = run(&["check"], &format!("{}\n", valid_line("a")));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    for args in [
        &["bogus"][..],
        &[],
        &["check", "--frob"],
        &["encode", "--ts"],
        &["encode", "--ts", "soon"],
        &["listen"],
        &["listen", "--unix", "a", "--tcp", "b"],
        &["check", "--unix", "a"],
    ] {
        let out = run(args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("error:") || stderr.contains("Usage:"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = run(&["--help"], "");
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("listen"));
}

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
    assert!(stderr.contains("handed back 0"), "{stderr}");

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
        &format!("{v}\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no service tree id"));
}

/// Kills the child when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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
