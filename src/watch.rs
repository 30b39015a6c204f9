//! Watching for the agent's socket to appear, so that an agent that (re)starts is
//! connected to at once instead of at the end of the backoff.
//!
//! On Linux a thread blocks in `poll` on an inotify watch of the socket's directory: it
//! costs nothing until something is created there. Where watching is not possible (no
//! inotify, no such directory, a transport without a socket file) the backoff simply
//! runs its course.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;

use crate::link::{Link, LinkState};
use crate::transport::Transport;

/// After a socket appeared the agent may not be listening yet (it binds, then listens):
/// for this long, attempts come every [`SETTLE_RETRY`] instead of after the backoff.
const SETTLE_FOR: Duration = Duration::from_millis(200);
const SETTLE_RETRY: Duration = Duration::from_millis(20);

/// A watch on the sockets a transport connects to.
pub(crate) struct Watch {
    #[cfg(target_os = "linux")]
    running: Option<linux::Running>,
}

impl Watch {
    /// Starts watching for `transport`'s socket(s) to appear; each appearance wakes
    /// waiters on `link`. Inert where watching is not possible.
    pub(crate) fn new(transport: &Transport, link: &Arc<Link>) -> Watch {
        #[cfg(target_os = "linux")]
        {
            Watch {
                running: linux::Running::start(transport, link),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (transport, link);
            Watch {}
        }
    }

    /// One wait of a backoff on `link`'s condition: returns true when it is time for the
    /// next attempt (`until` passed, or a watched socket appeared since the last wait),
    /// false when woken for something else (the caller looks at the link's state and
    /// waits again).
    pub(crate) fn wait(
        &self,
        link: &Link,
        st: &mut MutexGuard<'_, LinkState>,
        until: Instant,
    ) -> bool {
        #[cfg(target_os = "linux")]
        if let Some(running) = &self.running {
            return running.wait(link, st, until);
        }
        link.cond.wait_until(st, until).timed_out()
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashMap;
    use std::ffi::OsString;
    use std::io;
    use std::os::fd::{AsRawFd, RawFd};
    use std::os::unix::net::UnixStream;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread::{self, JoinHandle};
    use std::time::Instant;

    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
    use parking_lot::{Mutex, MutexGuard};

    use super::{SETTLE_FOR, SETTLE_RETRY};
    use crate::link::{Link, LinkState};
    use crate::transport::{Transport, agent_sockets_in};

    /// What the watcher thread tells the waiting supervisor.
    #[derive(Default)]
    struct Seen {
        /// A watched socket appeared since the last wait looked.
        appeared: AtomicBool,
        /// When one last appeared.
        last: Mutex<Option<Instant>>,
    }

    pub(super) struct Running {
        seen: Arc<Seen>,
        /// Dropping it wakes the watcher thread (its end reads end-of-file), which ends.
        stop: Option<UnixStream>,
        thread: Option<JoinHandle<()>>,
    }

    impl Running {
        pub(super) fn start(transport: &Transport, link: &Arc<Link>) -> Option<Running> {
            let paths = match transport {
                Transport::Unix(path) => vec![path.clone()],
                Transport::AgentDir(dir) => agent_sockets_in(dir).to_vec(),
                _ => return None,
            };
            let inotify = Inotify::init().ok()?;
            let mut watcher = Watcher {
                inotify,
                interests: HashMap::new(),
                paths,
            };
            watcher.watch_all();
            if watcher.interests.is_empty() {
                return None;
            }
            let (stop, stopped) = UnixStream::pair().ok()?;
            let seen = Arc::new(Seen::default());
            let thread = {
                let (seen, link) = (Arc::clone(&seen), Arc::clone(link));
                thread::Builder::new()
                    .name("geneva-audit-watch".into())
                    .spawn(move || watcher.run(&stopped, &seen, &link))
                    .ok()?
            };
            Some(Running {
                seen,
                stop: Some(stop),
                thread: Some(thread),
            })
        }

        pub(super) fn wait(
            &self,
            link: &Link,
            st: &mut MutexGuard<'_, LinkState>,
            until: Instant,
        ) -> bool {
            if self.seen.appeared.swap(false, Ordering::SeqCst) {
                return true;
            }
            let settling = self
                .seen
                .last
                .lock()
                .is_some_and(|at| at.elapsed() < SETTLE_FOR);
            let wake = if settling {
                until.min(Instant::now() + SETTLE_RETRY)
            } else {
                until
            };
            let timed_out = link.cond.wait_until(st, wake).timed_out();
            self.seen.appeared.swap(false, Ordering::SeqCst) || timed_out
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            drop(self.stop.take());
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// What an event in a watched directory means.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Interest {
        /// A watched socket appeared.
        Socket,
        /// A directory that holds (or leads to) a watched socket appeared: watch anew.
        Dir,
    }

    struct Watcher {
        inotify: Inotify,
        /// Per watched directory, the names in it that matter.
        interests: HashMap<WatchDescriptor, Vec<(OsString, Interest)>>,
        /// The sockets watched for.
        paths: Vec<PathBuf>,
    }

    impl Watcher {
        /// Watches for every socket as far as the directories that exist allow; returns
        /// whether one exists now.
        fn watch_all(&mut self) -> bool {
            let mut exists = false;
            for path in self.paths.clone() {
                exists |= self.watch_for(&path);
            }
            exists
        }

        /// Watches `path`'s directory for it, or, when that directory does not exist yet,
        /// the one above for the directory. Returns whether `path` exists now.
        fn watch_for(&mut self, path: &Path) -> bool {
            let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
                return false;
            };
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            match self.add(dir, name.into(), Interest::Socket) {
                Ok(()) => path.exists(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if let (Some(above), Some(dir_name)) = (dir.parent(), dir.file_name()) {
                        let _ = self.add(above, dir_name.into(), Interest::Dir);
                    }
                    false
                }
                Err(_) => false,
            }
        }

        fn add(&mut self, dir: &Path, name: OsString, interest: Interest) -> io::Result<()> {
            let wd = self
                .inotify
                .watches()
                .add(dir, WatchMask::CREATE | WatchMask::MOVED_TO)?;
            let interests = self.interests.entry(wd).or_default();
            if !interests.iter().any(|(n, i)| *n == name && *i == interest) {
                interests.push((name, interest));
            }
            Ok(())
        }

        /// Waits for events until `stopped` reads end-of-file (or fails).
        fn run(mut self, stopped: &UnixStream, seen: &Seen, link: &Link) {
            let mut buffer = [0u8; 4096];
            loop {
                match wait_readable(self.inotify.as_raw_fd(), stopped.as_raw_fd()) {
                    Ok(Ready::Events) => {}
                    Ok(Ready::Stop) => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                }
                let mut appeared = false;
                let mut new_dir = false;
                match self.inotify.read_events(&mut buffer) {
                    Ok(events) => {
                        for event in events {
                            if event.mask.contains(EventMask::Q_OVERFLOW) {
                                // Events were lost: one of them may have been ours.
                                appeared = true;
                                continue;
                            }
                            if event.mask.contains(EventMask::IGNORED) {
                                self.interests.remove(&event.wd);
                                continue;
                            }
                            let (Some(name), Some(interests)) =
                                (event.name, self.interests.get(&event.wd))
                            else {
                                continue;
                            };
                            for (watched, interest) in interests {
                                if watched.as_os_str() != name {
                                    continue;
                                }
                                match interest {
                                    Interest::Socket => appeared = true,
                                    Interest::Dir => new_dir = true,
                                }
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
                // Sockets made before the new directory's watch began are seen here.
                if new_dir {
                    appeared |= self.watch_all();
                }
                if appeared {
                    seen.appeared.store(true, Ordering::SeqCst);
                    *seen.last.lock() = Some(Instant::now());
                    // Under the link's lock, so a supervisor between its look at
                    // `appeared` and its wait cannot miss the wake-up.
                    let _st = link.lock();
                    link.cond.notify_all();
                }
            }
        }
    }

    enum Ready {
        Events,
        Stop,
    }

    /// Blocks until `events` is readable or `stop` is readable or hung up (stop wins).
    #[allow(unsafe_code)]
    fn wait_readable(events: RawFd, stop: RawFd) -> io::Result<Ready> {
        let mut fds = [
            libc::pollfd {
                fd: events,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a live array of two initialised pollfd, and its length is
        // passed with it; both descriptors are owned by the caller and stay open for the
        // call. Neither std nor the inotify crate offers a wait on two descriptors.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if fds[1].revents != 0 {
            return Ok(Ready::Stop);
        }
        Ok(Ready::Events)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::Watch;
    use crate::link::Link;
    use crate::notify::Notifier;
    use crate::stats::Counters;
    use crate::transport::{MemorySink, Transport};

    fn link() -> Arc<Link> {
        let counters = Arc::new(Counters::default());
        let notifier = Notifier::new(16, Arc::clone(&counters));
        Arc::new(Link::new(counters, notifier, 16, Duration::from_secs(15)))
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ga-watch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Waits as the supervisor does, until `wait` says it is time to try.
    fn wait_for_attempt(watch: &Watch, link: &Link, until: Instant) -> Duration {
        let started = Instant::now();
        let mut st = link.lock();
        while !watch.wait(link, &mut st, until) {}
        started.elapsed()
    }

    #[test]
    fn a_wait_ends_when_the_socket_appears_and_runs_its_course_otherwise() {
        let dir = temp_dir("appears");
        let link = link();
        let socket = dir.join("agent.sock");
        let watch = Watch::new(&Transport::Unix(socket.clone()), &link);
        assert!(watch.running.is_some());
        let short = wait_for_attempt(&watch, &link, Instant::now() + Duration::from_millis(50));
        assert!(short >= Duration::from_millis(50), "{short:?}");
        let maker = std::thread::spawn(move || {
            // Most often while the wait below is under way; earlier works too, as the
            // appearance is kept for the next wait.
            std::thread::sleep(Duration::from_millis(100));
            std::fs::write(&socket, b"").unwrap();
        });
        let took = wait_for_attempt(&watch, &link, Instant::now() + Duration::from_secs(30));
        maker.join().unwrap();
        assert!(took < Duration::from_secs(10), "{took:?}");
        drop(watch);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sockets_whose_directories_are_made_later_are_seen_when_they_appear() {
        // Neither the agent's directory nor its `asa/` exists: the one above is watched.
        let root = temp_dir("made-later");
        let agent_dir = root.join("mdsd");
        let link = link();
        let watch = Watch::new(&Transport::AgentDir(agent_dir.clone()), &link);
        assert!(watch.running.is_some());
        let maker = std::thread::spawn(move || {
            std::fs::create_dir(&agent_dir).unwrap();
            std::fs::create_dir(agent_dir.join("asa")).unwrap();
            std::fs::write(agent_dir.join("asa/default_fluent.socket"), b"").unwrap();
        });
        // The directories alone may end a wait (it is time to look again), the socket
        // ends one for sure: the third wait at the latest.
        let mut waits = Vec::new();
        while waits.len() < 3 {
            let until = Instant::now() + Duration::from_secs(30);
            waits.push(wait_for_attempt(&watch, &link, until));
            if root.join("mdsd/asa/default_fluent.socket").exists() {
                break;
            }
        }
        maker.join().unwrap();
        let longest = waits.iter().max().unwrap();
        assert!(*longest < Duration::from_secs(10), "{waits:?}");
        drop(watch);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn transports_without_a_socket_file_are_not_watched() {
        let link = link();
        for transport in [
            Transport::NoOp,
            Transport::Memory(MemorySink::new()),
            Transport::Tcp("127.0.0.1:1".into()),
        ] {
            assert!(Watch::new(&transport, &link).running.is_none());
        }
        // Nor is a socket whose directory, and the one above, do not exist.
        let nowhere = Transport::Unix("/nonexistent-ga/nor-this/agent.sock".into());
        assert!(Watch::new(&nowhere, &link).running.is_none());
    }
}
