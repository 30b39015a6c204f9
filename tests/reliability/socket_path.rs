//! 4. The socket path turned into something else.

use super::*;

enum PathFault {
    RegularFile,
    Directory,
    DeniedSocket,
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1).map(|euid| euid == "0"))
        .unwrap_or(false)
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn path_turned_into(fault: PathFault) {
    use std::io::ErrorKind;
    const OBSERVE: Duration = Duration::from_secs(2);
    let (name, expected_kind) = match fault {
        PathFault::RegularFile => ("a regular file", ErrorKind::ConnectionRefused),
        PathFault::Directory => ("a directory", ErrorKind::ConnectionRefused),
        PathFault::DeniedSocket => ("a socket with mode 000", ErrorKind::PermissionDenied),
    };
    let dir = TempDir::new("path-fault");
    let path = dir.socket();
    let mut denied_agent = None;
    match fault {
        PathFault::RegularFile => std::fs::write(&path, b"not a socket").unwrap(),
        PathFault::Directory => std::fs::create_dir(&path).unwrap(),
        PathFault::DeniedSocket => {
            let agent = TestAgent::unix(&path).unwrap();
            set_mode(&path, 0o000);
            denied_agent = Some(agent);
        }
    }
    let backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        multiplier: 2.0,
        full_jitter: true,
    };
    let client = Client::builder(STI)
        .unix_socket(&path)
        .backoff(backoff)
        .build()
        .unwrap();
    let notifications = client.notifications();
    send_range(&client, 0, 100);
    // The passage of time under test: the path stays wrong.
    thread::sleep(OBSERVE);
    let stats = client.stats();
    let events: Vec<Event> = notifications.try_iter().map(|n| n.event).collect();
    let failed: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::ConnectFailed {
                destination,
                kind,
                error,
                failures,
                retry_in,
            } => Some((destination, *kind, error, *failures, *retry_in)),
            _ => None,
        })
        .collect();
    let (destination, kind, error, _, _) = failed.first().expect("a ConnectFailed");
    println!(
        "[path is {name}] {} connection attempts in {OBSERVE:?} (backoff {:?} to {:?}), \
         notified as: {destination}: {kind:?}: {error}; longest retry_in {:?}",
        stats.connect_failures,
        backoff.initial,
        backoff.max,
        failed.iter().map(|f| f.4).max().unwrap()
    );
    assert!(
        destination.contains(path.to_str().unwrap()),
        "{destination}"
    );
    assert_eq!(*kind, expected_kind, "{error}");
    assert!(error.contains("os error"), "{error}");
    assert!(failed.iter().all(|f| f.1 == expected_kind));
    // Consecutive failures are counted one by one, and the waits stay under the cap.
    assert!(failed.windows(2).all(|w| w[1].3 == w[0].3 + 1));
    assert!(failed.iter().all(|f| f.4 <= backoff.max));
    // Backoff, not a busy loop: with waits drawn up to 200 ms, a handful per second.
    assert!(stats.connect_failures >= 3, "{}", stats.connect_failures);
    assert!(stats.connect_failures <= 100, "{}", stats.connect_failures);
    assert_eq!(stats.connects, 0);

    // Put the path right.
    let fixed = Instant::now();
    let agent = match fault {
        PathFault::RegularFile => {
            std::fs::remove_file(&path).unwrap();
            TestAgent::unix(&path).unwrap()
        }
        PathFault::Directory => {
            std::fs::remove_dir(&path).unwrap();
            TestAgent::unix(&path).unwrap()
        }
        PathFault::DeniedSocket => {
            set_mode(&path, 0o600);
            denied_agent.take().unwrap()
        }
    };
    client.flush(PATIENCE).unwrap();
    let recovered = fixed.elapsed();
    let frames = agent.wait_for_frames(101, PATIENCE).unwrap();
    println!("[path is {name}] recovered {recovered:?} after the path was put right");
    assert_consecutive(&seqs(&frames), 0, 100);
    // Within a few backoff caps (200 ms) and a margin for a loaded machine, not the
    // default backoff's 30 s.
    assert!(recovered < Duration::from_secs(5), "{recovered:?}");
    client.close(PATIENCE);
}

#[test]
fn socket_path_is_a_regular_file() {
    let _serial = serial();
    path_turned_into(PathFault::RegularFile);
}

#[test]
fn socket_path_is_a_directory() {
    let _serial = serial();
    path_turned_into(PathFault::Directory);
}

/// Set in the child process that runs the mode-000 scenario as `nobody`.
const AS_NOBODY: &str = "GENEVA_AUDIT_TEST_AS_NOBODY";

#[test]
fn socket_path_denies_connecting() {
    let _serial = serial();
    if std::env::var_os(AS_NOBODY).is_some() {
        assert!(!is_root(), "the child was to run as nobody");
        path_turned_into(PathFault::DeniedSocket);
        return;
    }
    if !is_root() {
        path_turned_into(PathFault::DeniedSocket);
        return;
    }
    // File permissions do not apply to root: run this test again in a child process
    // that drops to nobody (uid and gid 65534) before it starts, where they do.
    denied_as_nobody();
}

#[allow(unsafe_code)]
fn denied_as_nobody() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    const NOBODY: libc::uid_t = 65534;
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "socket_path::socket_path_denies_connecting",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(AS_NOBODY, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec the closure makes three system calls and builds an
    // io::Error from errno; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().expect("the test binary again, as nobody");
    let out = output_within(child, LONG);
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    assert!(
        out.status.success(),
        "as nobody: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
}
