//! `send`: reads JSON records from stdin and sends them to the agent. Every line is
//! judged on its own; what cannot be delivered within `--timeout` of no progress is
//! handed back; the client's notifications are told as they happen.

use std::fs::File;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use geneva_audit::{Client, FlushError, Record, SendError, Stats, Transport};

use crate::args::SendArgs;
use crate::handback::HandBack;
use crate::input::{Lines, hint_if_terminal};
use crate::judge::{Judge, MAX_FRAME_SIZE};
use crate::notices::Notices;
use crate::progress::{Console, Counts, Progress};
use crate::summary::Summary;

/// How long one wait on the client lasts before progress and the timeout are looked at.
const SLICE: Duration = Duration::from_millis(200);

/// The `--unsent` file: it holds the same records as the spool, so it is created 0600
/// whatever the umask (a file that exists keeps the mode its owner gave it).
fn create_private(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

pub fn run(args: &SendArgs) -> ExitCode {
    let unsent_file = match &args.unsent {
        Some(path) => match create_private(path) {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!("geneva-audit: cannot create {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    hint_if_terminal();
    let mut send = Send::new(args);
    let mut lines = Lines::new(io::stdin().lock());
    loop {
        match lines.next_line() {
            Ok(Some((n, line))) => send.line(n, line),
            Ok(None) => {
                send.summary.input_complete = true;
                break;
            }
            Err(e) => {
                send.console
                    .say(&format!("geneva-audit: reading stdin: {e}"));
                break;
            }
        }
    }
    let (summary, handback, unsent, id) = send.finish();
    finish(
        args,
        summary,
        &handback,
        &unsent,
        id.as_deref(),
        unsent_file,
    )
}

/// Writes the records not delivered and the summary; the exit status.
fn finish(
    args: &SendArgs,
    mut summary: Summary,
    handback: &HandBack,
    unsent: &[Record],
    service_tree_id: Option<&str>,
    unsent_file: Option<File>,
) -> ExitCode {
    let mut ok = true;
    summary.handed_back = handback.count(unsent);
    if let (Some(file), Some(path)) = (unsent_file, &args.unsent) {
        summary.unsent_file = Some(path.clone());
        if let Err(e) = handback.write(unsent, service_tree_id, file, path) {
            eprintln!("geneva-audit: {e}");
            ok = false;
        }
    }
    if args.json {
        let mut out = io::stdout().lock();
        if let Err(e) = writeln!(out, "{}", summary.json()).and_then(|()| out.flush()) {
            eprintln!("geneva-audit: writing the summary to stdout: {e}");
            ok = false;
        }
    } else {
        eprintln!("{}", summary.text());
    }
    if ok && summary.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One run of `send`.
struct Send {
    transport: Transport,
    timeout: Duration,
    close_timeout: Duration,
    judge: Judge,
    spool: Option<std::path::PathBuf>,
    client: Option<Client>,
    notices: Option<Notices>,
    progress: Progress,
    console: Console,
    stall: Stall,
    handback: HandBack,
    summary: Summary,
}

impl Send {
    fn new(args: &SendArgs) -> Send {
        let progress = Progress::new();
        Send {
            transport: args.endpoint.transport(),
            timeout: args.timeout,
            close_timeout: args.close_timeout,
            judge: Judge::new(args.service_tree_id.clone()),
            spool: args.spool.clone(),
            client: None,
            notices: None,
            console: progress.console(),
            progress,
            stall: Stall::new(args.timeout),
            handback: HandBack::default(),
            summary: Summary::default(),
        }
    }

    fn line(&mut self, n: usize, line: &[u8]) {
        self.summary.lines += 1;
        match self.judge.judge(line) {
            Ok(accepted) => self.send(accepted.record),
            Err(rule) => {
                self.summary.refused += 1;
                self.console.say(&format!("line {n}: {rule}"));
            }
        }
        self.show_progress();
    }

    fn send(&mut self, mut record: Record) {
        if self.summary.stopped.is_some() {
            self.handback.never_sent(record);
            return;
        }
        let Some(client) = self.client() else {
            self.handback.never_sent(record);
            return;
        };
        loop {
            match client.send_timeout(record, SLICE) {
                Ok(()) => return,
                Err(SendError::QueueFull(r)) => record = r,
                Err(e) => {
                    // The judge applied the client's rules already: only a client that
                    // stopped working refuses here.
                    self.stop(format!("the client refused a record: {e}"));
                    self.handback.never_sent(e.into_record());
                    return;
                }
            }
            let stats = client.stats();
            self.show_progress();
            if self.stall.expired(&stats) {
                self.stop(self.stall_reason());
                self.handback.never_sent(record);
                return;
            }
        }
    }

    /// The client, built for the service tree id in use once the first line passed.
    fn client(&mut self) -> Option<Client> {
        if let Some(client) = &self.client {
            return Some(client.clone());
        }
        let id = self.judge.service_tree_id()?.to_owned();
        let mut builder = Client::builder(id)
            .transport(self.transport.clone())
            .max_frame_size(MAX_FRAME_SIZE);
        if let Some(dir) = &self.spool {
            builder = builder.spool(dir);
        }
        let built = builder.build();
        match built {
            Ok(client) => {
                self.notices = Notices::start(
                    client.notifications(),
                    self.transport.to_string(),
                    self.console.clone(),
                );
                self.stall = Stall::new(self.timeout);
                self.client = Some(client.clone());
                Some(client)
            }
            Err(e) => {
                self.stop(format!("cannot start the client: {e}"));
                None
            }
        }
    }

    fn stop(&mut self, why: String) {
        self.console.say(&format!("geneva-audit: stopping: {why}"));
        self.summary.stopped = Some(why);
    }

    fn stall_reason(&self) -> String {
        format!(
            "no record was delivered to {} for {} s (--timeout)",
            self.transport,
            self.timeout.as_secs_f64()
        )
    }

    /// Waits until every accepted record is delivered or the timeout says stop, closes
    /// the client and tells its last notifications.
    /// Also returns what `close` handed back and the service tree id in use.
    fn finish(mut self) -> (Summary, HandBack, Vec<Record>, Option<String>) {
        let mut unsent = Vec::new();
        if let Some(client) = self.client.take() {
            if self.summary.stopped.is_none() {
                self.wait_for_delivery(&client);
            }
            let close_timeout = if self.summary.stopped.is_some() {
                Duration::ZERO
            } else {
                self.close_timeout
            };
            let report = client.close(close_timeout);
            self.summary.delivered = report.delivered;
            self.summary.spooled = report.spooled;
            self.summary.written_unconfirmed = report.written_unconfirmed;
            self.summary.spool_replayed = report.stats.spool_replayed;
            self.summary.spool_bytes = report.stats.spool_bytes;
            self.summary.spool_corrupt = report.stats.spool_corrupt;
            self.summary.spool = self.spool.clone();
            // What a thread stuck in the OS held is lost without being handed back.
            let handed = report.unsent.len() as u64;
            self.summary.lost = report.stats.lost.saturating_sub(handed);
            unsent = report.unsent;
            if !report.clean && self.summary.stopped.is_none() {
                self.summary.stopped = Some(format!(
                    "closing the client took longer than {} s",
                    close_timeout.as_secs_f64()
                ));
            }
        }
        if let Some(notices) = self.notices.take() {
            notices.finish();
        }
        self.progress.finish();
        let id = self.judge.service_tree_id().map(str::to_owned);
        (self.summary, self.handback, unsent, id)
    }

    fn wait_for_delivery(&mut self, client: &Client) {
        loop {
            match client.flush(SLICE) {
                Ok(()) => return,
                Err(FlushError::Closed) => {
                    self.stop("the client stopped working".to_owned());
                    return;
                }
                // Every record was dealt with; the summary counts the lost ones.
                Err(FlushError::Lost { .. }) => return,
                Err(_) => {} // Timeout, or a refusal a later version adds: look again
            }
            let stats = client.stats();
            self.show_progress();
            if self.stall.expired(&stats) {
                self.stop(self.stall_reason());
                return;
            }
        }
    }

    fn show_progress(&mut self) {
        let delivered = self.client.as_ref().map_or(0, |c| delivered(&c.stats()));
        self.progress.show(Counts {
            lines: self.summary.lines,
            delivered,
            refused: self.summary.refused,
        });
    }
}

/// Records the agent has read.
fn delivered(stats: &Stats) -> u64 {
    stats.delivered
}

/// Whether records have waited for `timeout` with none delivered.
#[derive(Debug)]
struct Stall {
    timeout: Duration,
    best: u64,
    since: Instant,
}

impl Stall {
    fn new(timeout: Duration) -> Stall {
        Stall {
            timeout,
            best: 0,
            since: Instant::now(),
        }
    }

    fn expired(&mut self, stats: &Stats) -> bool {
        let waiting = stats.pending + stats.in_flight;
        self.expired_at(delivered(stats), waiting, Instant::now())
    }

    /// Only a new high counts as progress, so that no count that can go back (a
    /// resend after a failure) could keep a stuck run alive. Nothing waiting is no stall.
    fn expired_at(&mut self, delivered: u64, waiting: u64, now: Instant) -> bool {
        if delivered > self.best || waiting == 0 {
            self.best = self.best.max(delivered);
            self.since = now;
        }
        now.duration_since(self.since) >= self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_time_without_a_new_high_while_records_wait() {
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let mut stall = Stall::new(Duration::from_secs(10));
        stall.since = t0;
        assert!(!stall.expired_at(5, 3, s(1)));
        // Going back after a resend and up again to the old high is no progress.
        assert!(!stall.expired_at(2, 6, s(5)));
        assert!(!stall.expired_at(5, 3, s(10)));
        assert!(stall.expired_at(5, 3, s(11)));
        // Nothing waiting: the clock starts again.
        assert!(!stall.expired_at(5, 0, s(30)));
        assert!(!stall.expired_at(5, 1, s(39)));
        assert!(stall.expired_at(5, 1, s(40)));
    }
}
