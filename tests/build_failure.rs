//! A builder that waits for a first connection and gets none leaves no thread behind.
//! (A test binary of its own: it counts this process's threads.)

mod common;

use std::time::Duration;

use common::*;
use geneva_audit::BuildError;

/// The names of this process's threads that belong to a client.
fn client_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|name| name.trim().to_owned())
                .filter(|name| name.starts_with("geneva-audit"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_build_that_finds_no_agent_stops_its_threads() {
    let dir = TempDir::new("build-failure");
    let err = builder()
        .unix_socket(dir.socket())
        .wait_for_connection(true)
        .connect_timeout(Duration::from_millis(100))
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::Connect { .. }), "{err}");
    wait_until("the client's threads to stop", || {
        client_threads().is_empty()
    });
}
