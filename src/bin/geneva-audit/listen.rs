//! `listen`: runs the test agent and prints every frame it receives as a JSON line.
//!
//! Output is written on a thread of its own, one batch of lines at a time, through a
//! channel that holds one batch: when stdout is blocked the channel fills and the agent
//! stops reading, so the senders' sockets fill and hold them back instead of this
//! process buffering without bound. SIGINT and SIGTERM remove the socket
//! file and end it with exit status 0: a signal is how `listen` is meant to end.

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, TrySendError};
use geneva_audit::agent::TestAgent;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::args::{Address, ListenArgs};
use crate::frame_json::frame_json;

/// How long one wait on the agent lasts before it looks again.
const LISTEN_WAIT: Duration = Duration::from_secs(1);

pub fn run(args: &ListenArgs) -> ExitCode {
    let address = args.endpoint.address();
    let place = match &address {
        Address::Unix(path) => path.display().to_string(),
        Address::Tcp(addr) => addr.clone(),
    };
    // Signals are caught before the socket exists, and wait while it is made: none
    // can leave it behind.
    let socket_file: SocketFile = Arc::new(Mutex::new(None));
    let making = lock(&socket_file);
    if let Err(e) = remove_socket_on_signal(Arc::clone(&socket_file)) {
        eprintln!("geneva-audit: cannot handle SIGINT and SIGTERM for {place}: {e}");
        return ExitCode::FAILURE;
    }
    let agent = match &address {
        Address::Unix(path) => TestAgent::unix(path),
        Address::Tcp(addr) => TestAgent::tcp(addr.as_str()),
    };
    let mut making = making;
    let agent = match agent {
        Ok(agent) => agent,
        Err(e) => {
            eprintln!("geneva-audit: cannot listen on {place}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = agent.path() {
        *making = file_id(path).map(|id| (path.to_path_buf(), id));
    }
    drop(making);
    match (agent.path(), agent.local_addr()) {
        (Some(p), _) => eprintln!("geneva-audit: listening on {}", p.display()),
        (_, Some(a)) => eprintln!("geneva-audit: listening on {a}"),
        _ => {}
    }

    let (batches, to_print) = crossbeam_channel::bounded::<String>(1);
    let printer = std::thread::Builder::new()
        .name("stdout".into())
        .spawn(move || print_batches(&to_print));
    let printer = match printer {
        Ok(p) => p,
        Err(e) => {
            eprintln!("geneva-audit: cannot start the output thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    loop {
        // Wakes when anything arrives; the timeout only bounds the wait.
        let _ = agent.wait_for("frames or errors", LISTEN_WAIT, |s| {
            s.frames > 0 || s.errors > 0
        });
        for error in agent.take_errors() {
            eprintln!("geneva-audit: {place}: frame error: {error}");
        }
        let frames = agent.take_frames();
        if frames.is_empty() {
            continue;
        }
        let mut batch = String::new();
        for frame in &frames {
            batch.push_str(&frame_json(frame, args.flatten).to_string());
            batch.push('\n');
        }
        drop(frames);
        let sent = match batches.try_send(batch) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(batch)) => {
                // Stdout is behind: read nothing more until it takes this batch.
                agent.stop_reading();
                let sent = batches.send(batch).map_err(drop);
                agent.resume_reading();
                sent
            }
            Err(TrySendError::Disconnected(_)) => Err(()),
        };
        if sent.is_err() {
            // The output thread ended: stdout is closed or failed (it said why).
            drop(batches);
            let _ = printer.join();
            return ExitCode::FAILURE;
        }
    }
}

fn print_batches(batches: &Receiver<String>) {
    let mut out = io::stdout().lock();
    for batch in batches {
        if let Err(e) = out.write_all(batch.as_bytes()).and_then(|()| out.flush()) {
            if e.kind() != io::ErrorKind::BrokenPipe {
                eprintln!("geneva-audit: writing to stdout: {e}");
            }
            return;
        }
    }
}

/// On SIGINT or SIGTERM, removes the socket file (if it is still the one the agent
/// made) and exits with 0: a signal is how `listen` is meant to end.
/// The socket file the agent made and its identity (device, inode).
type SocketFile = Arc<Mutex<Option<(PathBuf, (u64, u64))>>>;

fn lock(file: &SocketFile) -> MutexGuard<'_, Option<(PathBuf, (u64, u64))>> {
    file.lock().unwrap_or_else(PoisonError::into_inner)
}

fn remove_socket_on_signal(socket: SocketFile) -> io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                if let Some((path, id)) = &*lock(&socket) {
                    remove_if_same(path, *id);
                }
                std::process::exit(0);
            }
        })?;
    Ok(())
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

fn remove_if_same(path: &Path, id: (u64, u64)) {
    if file_id(path) == Some(id) {
        if let Err(e) = std::fs::remove_file(path) {
            eprintln!("geneva-audit: cannot remove {}: {e}", path.display());
        }
    }
}
