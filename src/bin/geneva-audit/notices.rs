//! The client's notifications on stderr, in plain words, as they happen: each distinct
//! message at most once per [`REPEAT_QUIET`], the repeats counted.

use std::collections::HashMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use geneva_audit::{Event, LossReason, Notifications as Events, RecvTimeoutError};

use crate::progress::Console;
use crate::summary;

/// How often the thread looks whether it was told to stop, between events.
const STOP_POLL: Duration = Duration::from_millis(100);

/// How long the same message stays quiet after it was printed.
pub const REPEAT_QUIET: Duration = Duration::from_secs(10);

/// What one event says, and the key that makes two events "the same" (the changing
/// parts, such as failure counts and retry delays, left out).
pub fn describe(event: &Event, destination: &str) -> (String, String) {
    match event {
        Event::ConnectFailed {
            destination, error, ..
        } => (
            format!("connect {destination} {error}"),
            format!("cannot connect to {destination}: {error}; retrying"),
        ),
        Event::Connected {
            destination,
            reconnect,
        } => {
            let verb = if *reconnect {
                "reconnected"
            } else {
                "connected"
            };
            (
                format!("{verb} {destination}"),
                format!("{verb} to {destination}"),
            )
        }
        Event::WriteFailed { error, .. } => (
            format!("write {error}"),
            format!(
                "writing to {destination} failed: {error}; the records the agent was not \
                 seen to read are written again first on the next connection (with \
                 --spool, kept on disk once the agent has been away for a second)"
            ),
        ),
        Event::RecordsLost { count, reason } => {
            let why = match reason {
                LossReason::Closed => "not read by the agent when the client closed",
                LossReason::Abandoned => "the client stopped before the agent read them",
                LossReason::NotRead => "the agent went away without reading them",
                LossReason::Unencodable => "the encoder could not write them (a bug)",
                _ => "the client lost them",
            };
            (
                format!("lost {reason:?}"),
                format!("{} not delivered: {why}", summary::count(*count, "record")),
            )
        }
        Event::ClientDead { reason } => (
            "dead".to_owned(),
            format!("the client stopped working: {reason}"),
        ),
        other => (other.to_string(), other.to_string()),
    }
}

/// Remembers when each message was last printed and how often it came since.
#[derive(Debug, Default)]
pub struct Quieter {
    seen: HashMap<String, (Instant, u64)>,
}

impl Quieter {
    /// The line to print for a message now, if any.
    pub fn line(&mut self, key: String, text: &str, now: Instant) -> Option<String> {
        match self.seen.get_mut(&key) {
            Some((last, quiet)) if now.duration_since(*last) < REPEAT_QUIET => {
                *quiet += 1;
                None
            }
            Some((last, quiet)) => {
                let line = match *quiet {
                    0 => text.to_owned(),
                    n => format!("{text} (and {} more since it was last said)", times(n)),
                };
                *last = now;
                *quiet = 0;
                Some(line)
            }
            None => {
                self.seen.insert(key, (now, 0));
                Some(text.to_owned())
            }
        }
    }

    /// Lines for the repeats not told yet, at the end.
    pub fn rest(&mut self, texts: &HashMap<String, String>) -> Vec<String> {
        let mut out: Vec<String> = self
            .seen
            .drain()
            .filter(|(_, (_, quiet))| *quiet > 0)
            .filter_map(|(key, (_, quiet))| {
                let text = texts.get(&key)?;
                Some(format!("{text} (and {} more)", times(quiet)))
            })
            .collect();
        out.sort();
        out
    }
}

fn times(n: u64) -> String {
    if n == 1 {
        "1 time".to_owned()
    } else {
        format!("{n} times")
    }
}

/// The thread that prints notifications until it is stopped.
pub struct Notices {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Notices {
    pub fn start(events: Events, destination: String, console: Console) -> Option<Notices> {
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("notices".into())
            .spawn(move || print_until(&events, &stopped, &destination, &console))
            .ok()?;
        Some(Notices {
            stop,
            thread: Some(thread),
        })
    }

    /// Prints what is left and waits for the thread.
    pub fn finish(mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn print_until(events: &Events, stopped: &Receiver<()>, destination: &str, console: &Console) {
    let mut quieter = Quieter::default();
    let mut texts = HashMap::new();
    let mut say = |event: &Event| {
        // The agent leaving after reading everything is no news for the user: records
        // that come next go on a new connection (a failure there is reported).
        if let Event::AgentLeft { .. } = event {
            return;
        }
        let (key, text) = describe(event, destination);
        if let Some(line) = quieter.line(key.clone(), &text, Instant::now()) {
            console.say(&format!("geneva-audit: {line}"));
        }
        texts.insert(key, text);
    };
    loop {
        match events.recv_timeout(STOP_POLL) {
            Ok(n) => say(&n.event),
            Err(RecvTimeoutError::Ended) => break,
            Err(RecvTimeoutError::Timeout) => {
                if stopped.try_recv().is_ok() {
                    for n in events.try_iter() {
                        say(&n.event);
                    }
                    break;
                }
            }
        }
    }
    for line in quieter.rest(&texts) {
        console.say(&format!("geneva-audit: {line}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_message_is_said_once_then_counted() {
        let mut q = Quieter::default();
        let t0 = Instant::now();
        assert_eq!(q.line("k".into(), "a", t0).as_deref(), Some("a"));
        assert_eq!(q.line("k".into(), "a", t0 + Duration::from_secs(1)), None);
        assert_eq!(q.line("k".into(), "a", t0 + Duration::from_secs(2)), None);
        assert_eq!(q.line("j".into(), "b", t0).as_deref(), Some("b"));
        let later = t0 + REPEAT_QUIET + Duration::from_secs(1);
        assert_eq!(
            q.line("k".into(), "a", later).as_deref(),
            Some("a (and 2 times more since it was last said)")
        );
        assert_eq!(q.line("k".into(), "a", later), None);
        let texts = HashMap::from([("k".to_owned(), "a".to_owned())]);
        assert_eq!(q.rest(&texts), ["a (and 1 time more)"]);
    }

    #[test]
    fn a_connect_failure_names_the_destination_and_the_os_error() {
        let event = Event::ConnectFailed {
            destination: "unix:/no/such.sock".into(),
            kind: std::io::ErrorKind::NotFound,
            error: "No such file or directory (os error 2)".into(),
            failures: 3,
            retry_in: Duration::from_millis(400),
        };
        let (_, text) = describe(&event, "unix:/no/such.sock");
        assert_eq!(
            text,
            "cannot connect to unix:/no/such.sock: No such file or directory (os error 2); retrying"
        );
    }
}
