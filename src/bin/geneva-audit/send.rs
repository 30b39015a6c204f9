//! `send`: reads JSON records from stdin and sends them to the agent.

use std::process::ExitCode;
use std::time::Duration;

use geneva_audit::{Client, SendError};

use crate::args::{Address, SendArgs};
use crate::input::for_each_line;
use crate::judge::{Judge, MAX_FRAME_SIZE};

/// How long one `send_timeout` waits before it tries again (and says so).
const SEND_WAIT: Duration = Duration::from_secs(1);

pub fn run(opts: &SendArgs) -> ExitCode {
    let close_timeout = opts.close_timeout;
    let mut judge = Judge::new(opts.service_tree_id.clone());
    let mut client: Option<Client> = None;
    let mut invalid = 0usize;
    let mut unsent_unqueued = 0usize;
    let mut fatal = false;

    let complete = for_each_line(|n, line| {
        let accepted = match judge.judge(line) {
            Ok(a) => a,
            Err(rule) => {
                eprintln!("line {n}: {rule}");
                invalid += 1;
                return true;
            }
        };
        if client.is_none() {
            // The judge knows the id once a line has passed.
            let id = judge.service_tree_id().unwrap_or_default().to_owned();
            let builder = Client::builder(id).max_frame_size(MAX_FRAME_SIZE);
            let builder = match opts.endpoint.address() {
                Address::Unix(p) => builder.unix_socket(p),
                Address::Tcp(a) => builder.tcp(a),
            };
            match builder.build() {
                Ok(c) => client = Some(c),
                Err(e) => {
                    eprintln!("geneva-audit: cannot start the client: {e}");
                    fatal = true;
                    return false;
                }
            }
        }
        let Some(client) = client.as_ref() else {
            return false;
        };
        let mut record = accepted.record;
        loop {
            match client.send_timeout(record, SEND_WAIT) {
                Ok(()) => return true,
                Err(SendError::QueueFull(r)) => {
                    eprintln!("line {n}: the queue is full, waiting");
                    record = r;
                }
                Err(e @ (SendError::Invalid(..) | SendError::TooLarge { .. })) => {
                    eprintln!("line {n}: {e}");
                    invalid += 1;
                    return true;
                }
                // Closed, Dead, and any refusal a later version adds.
                Err(e) => {
                    eprintln!("line {n}: not sent: {e}");
                    unsent_unqueued += 1;
                    return true;
                }
            }
        }
    });

    let mut unsent = unsent_unqueued;
    let mut clean = true;
    if let Some(client) = client {
        let report = client.close(close_timeout);
        // `lost` counts what close handed back and anything a stuck writer still held.
        unsent += usize::try_from(report.stats.lost).unwrap_or(usize::MAX);
        // Exit 0 needs every valid record delivered: read by the agent, not just written.
        eprintln!(
            "geneva-audit: delivered {}, handed back {unsent}, invalid lines {invalid}{}",
            report.delivered,
            if report.clean {
                ""
            } else {
                " (close was not clean)"
            }
        );
        eprintln!("geneva-audit: stats {:?}", report.stats);
        clean = report.clean;
    } else if !fatal {
        eprintln!("geneva-audit: no input");
    }
    if fatal || !complete || invalid > 0 || unsent > 0 || !clean {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
