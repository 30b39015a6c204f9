//! Every command in docs/CLI.md exits 0 as printed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use geneva_audit::agent::TestAgent;

use crate::common::{PATIENCE, Pause, TempDir, output_within, wait_within};
use crate::{BIN, Killed, text};

/// The `$ ` lines of the manual's `console` blocks.
fn commands(manual: &str) -> Vec<String> {
    let mut in_console = false;
    let mut out = Vec::new();
    for line in manual.lines() {
        if line.starts_with("```") {
            in_console = line == "```console";
        } else if in_console {
            if let Some(command) = line.strip_prefix("$ ") {
                out.push(command.to_owned());
            }
        }
    }
    out
}

/// The command as a shell line: /tmp/ replaced by a test directory, then the leading
/// `geneva-audit` by our binary (in that order: the binary's own path may lie under
/// /tmp/, as a checkout there does).
fn shell_line(command: &str, tmp: &Path) -> String {
    let command = command.replace("/tmp/", &format!("{}/", tmp.display()));
    match command.strip_prefix("geneva-audit") {
        Some(rest) => format!("'{BIN}'{rest}"),
        None => command,
    }
}

#[test]
fn every_command_in_the_manual_exits_0() {
    let root = env!("CARGO_MANIFEST_DIR");
    let manual = std::fs::read_to_string(Path::new(root).join("docs/CLI.md")).unwrap();
    let commands = commands(&manual);
    assert!(commands.len() >= 8, "{commands:?}");
    let dir = TempDir::new("cli-docs");
    // `/tmp/agent.sock` in the manual: an agent for the `send` commands.
    let _agent = TestAgent::unix(dir.socket()).unwrap();
    for command in &commands {
        if command.starts_with("cargo ") {
            continue; // building the crate again is not this test's business
        }
        if command.starts_with("geneva-audit listen") {
            listen_starts_and_stops_cleanly(command);
            continue;
        }
        let child = Command::new("sh")
            .arg("-c")
            .arg(shell_line(command, &dir.0))
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = output_within(child, PATIENCE);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{command}\n{}",
            text(&out.stderr)
        );
    }
}

/// A `listen` command runs until SIGTERM, then exits with 0.
fn listen_starts_and_stops_cleanly(command: &str) {
    let dir = TempDir::new("cli-docs-listen");
    let mut child = Killed(
        Command::new("sh")
            .arg("-c")
            .arg(format!("exec {}", shell_line(command, &dir.0)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let socket = dir.socket();
    let deadline = Instant::now() + PATIENCE;
    let mut pause = Pause::new();
    while !socket.exists() {
        assert!(child.0.try_wait().unwrap().is_none(), "{command} exited");
        assert!(Instant::now() < deadline, "{command}: no socket");
        pause.next();
    }
    let pid = i32::try_from(child.0.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid, which we have not waited for yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_within(&mut child.0, PATIENCE);
    assert_eq!(status.code(), Some(0), "{command}");
}
