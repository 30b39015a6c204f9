//! `send --spool` and `spool`: records kept on disk while the agent is away, listed,
//! and drained to it once it is back.

use geneva_audit::agent::TestAgent;
use serde_json::Value as Json;

use crate::common::{PATIENCE, TempDir};
use crate::{input, run, text, valid_line};

#[test]
fn records_kept_in_the_spool_are_listed_in_order_and_drained_to_the_agent() {
    let dir = TempDir::new("cli-spool");
    let socket = dir.socket();
    let sock = socket.to_str().unwrap();
    let spool = dir.0.join("spool");
    let spool = spool.to_str().unwrap();
    let names: Vec<String> = (0..5).map(|n| format!("op-{n}")).collect();
    let lines: Vec<String> = names.iter().map(|n| valid_line(n)).collect();
    // No agent: the records go to the spool, and the run says so and fails.
    let out = run(
        &[
            "send",
            "--unix",
            sock,
            "--spool",
            spool,
            "--timeout",
            "1",
            "--json",
        ],
        input(&lines),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let summary: Json = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(summary["spooled"], 5, "{summary}");
    assert!(summary["spool_bytes"].as_u64() > Some(0), "{summary}");
    assert_eq!(summary["spool_corrupt"], 0, "{summary}");
    assert_eq!(summary["handed_back"], 0, "{summary}");
    assert_eq!(summary["success"], false, "{summary}");
    // Listed as JSON lines, oldest first, without changing anything.
    for _ in 0..2 {
        let out = run(&["spool", spool], "");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let listed: Vec<Json> = text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let got: Vec<&str> = listed
            .iter()
            .map(|f| f["body"]["OperationName"].as_str().unwrap())
            .collect();
        assert_eq!(got, names);
        assert_eq!(listed[4]["position"], 4);
    }
    // Drained to the agent once it is there.
    let agent = TestAgent::unix(&socket).unwrap();
    let out = run(&["spool", spool, "--drain", "--unix", sock], "");
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("5 records sent from"), "{stderr}");
    // The drain's client may also have sent a heartbeat: the records are the frames
    // with an operation name.
    let mut got = Vec::new();
    for n in 5..8 {
        let frames = agent
            .wait_for_frames(n, PATIENCE)
            .unwrap_or_else(|e| panic!("{e}"));
        got = frames
            .iter()
            .filter_map(|f| f.body_str("OperationName").map(str::to_owned))
            .collect();
        if got.len() >= 5 {
            break;
        }
    }
    assert_eq!(got, names);
    let out = run(&["spool", spool], "");
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn listing_what_is_not_a_spool_names_it() {
    let dir = TempDir::new("cli-spool-missing");
    let missing = dir.0.join("nothing-here");
    let out = run(&["spool", missing.to_str().unwrap()], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&missing.display().to_string()),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_damaged_spool_is_named_and_counted_in_the_summary() {
    let dir = TempDir::new("cli-spool-damaged");
    let socket = dir.socket();
    let sock = socket.to_str().unwrap();
    let spool_dir = dir.0.join("spool");
    let spool = spool_dir.to_str().unwrap();
    let lines: Vec<String> = (0..20).map(|n| valid_line(&format!("op-{n}"))).collect();
    let args = [
        "send",
        "--unix",
        sock,
        "--spool",
        spool,
        "--timeout",
        "1",
        "--json",
    ];
    let out = run(&args, input(&lines));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // A byte flipped in the middle of the segment.
    let segment = std::fs::read_dir(&spool_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    let _agent = TestAgent::unix(&socket).unwrap();
    let out = run(&args, input(&[valid_line("op-new")]));
    let stderr = text(&out.stderr);
    // Records after the damage were not sent: not a success.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let summary: Json = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(summary["spool_corrupt"], 1, "{summary}");
    let replayed = summary["spool_replayed"].as_u64().unwrap_or(0);
    assert!(replayed > 0 && replayed < 20, "{summary}");
    assert_eq!(summary["spool_bytes"], 0, "{summary}");
    let name = segment.file_name().unwrap().to_str().unwrap();
    assert!(stderr.contains(name), "{stderr}");
}

/// Runs the command under a umask of `mask`, set by the shell that execs it.
fn run_with_umask(mask: &str, args: &[&str], stdin: Vec<u8>) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
        .arg(crate::BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sh");
    let mut pipe = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&stdin);
    });
    let out = child.wait_with_output().expect("wait for geneva-audit");
    writer.join().expect("stdin writer");
    out
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// The spool and the --unsent file hold caller identities and addresses: private to
/// the user whatever the umask.
#[test]
fn the_spool_and_the_unsent_file_are_private_under_a_permissive_umask() {
    for mask in ["022", "000"] {
        let dir = TempDir::new("cli-spool-private");
        let socket = dir.socket();
        let spool = dir.0.join("spool");
        let unsent = dir.0.join("unsent.jsonl");
        let lines: Vec<String> = (0..5).map(|n| valid_line(&format!("op-{n}"))).collect();
        let out = run_with_umask(
            mask,
            &[
                "send",
                "--unix",
                socket.to_str().unwrap(),
                "--spool",
                spool.to_str().unwrap(),
                "--unsent",
                unsent.to_str().unwrap(),
                "--timeout",
                "1",
                "--json",
            ],
            input(&lines),
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let summary: Json = serde_json::from_str(text(&out.stdout).trim()).unwrap();
        assert_eq!(summary["spooled"], 5, "{summary}");
        assert_eq!(mode(&spool), 0o700, "the spool under umask {mask}");
        let files: Vec<_> = std::fs::read_dir(&spool)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(
            files
                .iter()
                .any(|f| f.extension().is_some_and(|e| e == "seg")),
            "{files:?}"
        );
        for file in files {
            assert_eq!(mode(&file), 0o600, "{} under umask {mask}", file.display());
        }
        assert_eq!(mode(&unsent), 0o600, "--unsent under umask {mask}");
    }
}

/// A spool directory others can write to is not used: the client is not started, the
/// run says why and fails, and the records are handed back, not sent without a spool.
#[test]
fn send_refuses_a_spool_directory_others_can_write_to() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("cli-spool-open");
    let socket = dir.socket();
    let _agent = TestAgent::unix(&socket).unwrap();
    let spool = dir.0.join("spool");
    std::fs::create_dir(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o777)).unwrap();
    let lines: Vec<String> = (0..3).map(|n| valid_line(&format!("op-{n}"))).collect();
    let out = run(
        &[
            "send",
            "--unix",
            socket.to_str().unwrap(),
            "--spool",
            spool.to_str().unwrap(),
            "--json",
        ],
        input(&lines),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot start the client: cannot use {} as the spool",
            spool.display()
        )) && stderr.contains("mode 0777"),
        "{stderr}"
    );
    let summary: Json = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(summary["delivered"], 0, "{summary}");
    assert_eq!(summary["handed_back"], 3, "{summary}");
    assert_eq!(mode(&spool), 0o777);
}
