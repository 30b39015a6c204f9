//! `close` with a writer thread that cannot run: the report says it was not clean, and
//! every record the writer held is counted lost and notified, none left pending.
//!
//! The writer is stopped for real: a child process attaches to that one thread with
//! `ptrace` and holds it stopped (the rest of the process runs on), as a thread stuck
//! in the OS would be. This file has one test, so the process has one writer thread.

mod common;

use std::time::Duration;

use common::*;
use geneva_audit::{Event, LossReason};

/// A thread of this process held stopped by a child process that traces it; dropping
/// this lets it go (the child detaches and exits, and is reaped).
struct Stopped {
    child: libc::pid_t,
    release: libc::c_int,
}

impl Stopped {
    /// Stops thread `tid`; returns once it is stopped.
    #[allow(unsafe_code)]
    fn thread(tid: libc::pid_t) -> Stopped {
        let (mut up, mut down) = ([0; 2], [0; 2]);
        // SAFETY: plain system calls on descriptors this function owns. After fork the
        // child makes only async-signal-safe system calls (no allocation, no locks)
        // and leaves with _exit.
        unsafe {
            assert_eq!(libc::pipe2(up.as_mut_ptr(), libc::O_CLOEXEC), 0);
            assert_eq!(libc::pipe2(down.as_mut_ptr(), libc::O_CLOEXEC), 0);
            let child = libc::fork();
            assert!(child >= 0, "fork failed");
            if child == 0 {
                libc::close(up[0]);
                libc::close(down[1]);
                let null = std::ptr::null_mut::<libc::c_void>();
                if libc::ptrace(libc::PTRACE_SEIZE, tid, null, null) != 0 {
                    libc::_exit(2);
                }
                if libc::ptrace(libc::PTRACE_INTERRUPT, tid, null, null) != 0 {
                    libc::_exit(3);
                }
                let mut status = 0;
                if libc::waitpid(tid, &mut status, libc::__WALL) != tid {
                    libc::_exit(4);
                }
                libc::write(up[1], b"s".as_ptr().cast(), 1);
                // Until the parent lets go (or dies): then read returns.
                let mut byte = 0u8;
                libc::read(down[0], (&mut byte as *mut u8).cast(), 1);
                libc::ptrace(libc::PTRACE_DETACH, tid, null, null);
                libc::_exit(0);
            }
            libc::close(up[1]);
            libc::close(down[0]);
            let mut byte = 0u8;
            let got = libc::read(up[0], (&mut byte as *mut u8).cast(), 1);
            libc::close(up[0]);
            let stopped = Stopped {
                child,
                release: down[1],
            };
            if got != 1 {
                let mut status = 0;
                libc::waitpid(child, &mut status, 0);
                panic!(
                    "the tracer could not stop thread {tid}: exit status {}",
                    libc::WEXITSTATUS(status)
                );
            }
            stopped
        }
    }
}

impl Drop for Stopped {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: closing our end of the pipe and reaping our own child.
        unsafe {
            libc::close(self.release);
            let mut status = 0;
            libc::waitpid(self.child, &mut status, 0);
        }
    }
}

/// The thread id of this process's one client writer thread.
fn the_writer() -> libc::pid_t {
    let writers: Vec<libc::pid_t> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == "geneva-audit-wr")
        })
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .collect();
    assert_eq!(writers.len(), 1, "one writer thread: {writers:?}");
    writers[0]
}

#[test]
fn close_with_a_writer_that_cannot_run_is_not_clean_and_counts_what_it_held_as_lost() {
    let (_dir, _agent, client) = stalled_with("stuck-writer", |b| b.queue_capacity(64));
    let notifications = client.notifications();
    // Ten records written and unread, held by the writer, with the opening record the
    // agent had not finished reading; the first opening record was read.
    send_range(&client, 0, 10);
    wait_until("the records written", || {
        client.stats().written == 10 + OPENING
    });
    let stopped = Stopped::thread(the_writer());
    assert_eq!(thread_state("geneva-audit-wr"), Some('t'));
    // Five more wait in the queue: the writer cannot take them.
    send_range(&client, 10, 5);
    let timeout = Duration::from_millis(300);
    let (report, took) = within("close", PATIENCE, move || client.close(timeout));
    println!("close({timeout:?}) with the writer stopped took {took:?}");
    // The deadline passed and the writer did not stop within the grace after it.
    assert!(took >= timeout, "{took:?}");
    // And close kept its deadline: the stop grace, and a margin for a loaded machine.
    assert!(took < timeout + Duration::from_secs(3), "{took:?}");
    assert!(
        !report.clean,
        "close says clean with its writer left behind"
    );
    // What was queued comes back, in order; what the writer held cannot.
    assert!(handed_back(&report.unsent, 10..15), "{:?}", report.unsent);
    let s = report.stats;
    assert_eq!(s.accepted, 15 + OPENING, "{s:?}");
    assert_eq!(report.delivered, 1);
    assert_eq!(s.lost, s.accepted - s.delivered, "{s:?}");
    assert_eq!((s.pending, s.in_flight, s.written), (0, 0, 1), "{s:?}");
    let losses: Vec<(u64, LossReason)> = notifications
        .try_iter()
        .filter_map(|n| match n.event {
            Event::RecordsLost { count, reason } => Some((count, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        losses,
        [(5, LossReason::Closed), (11, LossReason::Abandoned)],
        "the queue's five handed back, the writer's eleven abandoned"
    );
    // Let go, the writer ends: it was left behind, not lost.
    drop(stopped);
    wait_until("the writer to end", || {
        thread_names().iter().all(|n| n != "geneva-audit-wr")
    });
}
