//! `listen`: runs the test agent and prints every frame it receives as a JSON line.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use geneva_audit::agent::TestAgent;

use crate::args::{Address, ListenArgs};
use crate::frame_json::frame_json;

/// How long one wait on the agent lasts before it looks again.
const LISTEN_WAIT: Duration = Duration::from_secs(1);

pub fn run(args: &ListenArgs) -> ExitCode {
    let flatten = args.flatten;
    let agent = match args.endpoint.address() {
        Address::Unix(p) => TestAgent::unix(p),
        Address::Tcp(a) => TestAgent::tcp(a.as_str()),
    };
    let agent = match agent {
        Ok(a) => a,
        Err(e) => {
            eprintln!("geneva-audit: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    match (agent.path(), agent.local_addr()) {
        (Some(p), _) => eprintln!("geneva-audit: listening on {}", p.display()),
        (_, Some(a)) => eprintln!("geneva-audit: listening on {a}"),
        _ => {}
    }
    loop {
        // Wakes when anything arrives; the timeout only bounds the wait.
        let _ = agent.wait_for("frames or errors", LISTEN_WAIT, |s| {
            s.frames > 0 || s.errors > 0
        });
        for error in agent.take_errors() {
            eprintln!("geneva-audit: frame error: {error}");
        }
        let frames = agent.take_frames();
        if frames.is_empty() {
            continue;
        }
        let mut out = io::stdout().lock();
        for frame in &frames {
            let line = frame_json(frame, flatten).to_string();
            if writeln!(out, "{line}").is_err() {
                return ExitCode::FAILURE;
            }
        }
        if out.flush().is_err() {
            return ExitCode::FAILURE;
        }
    }
}
