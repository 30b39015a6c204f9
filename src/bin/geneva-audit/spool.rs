//! `spool`: what a spool directory holds, as JSON lines, or sent to the agent.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use geneva_audit::agent::decode_frame;
use geneva_audit::{Client, FlushError, spool};

use crate::args::SpoolArgs;
use crate::frame_json::frame_json;
use crate::summary::count;

pub fn run(args: &SpoolArgs) -> ExitCode {
    if args.drain { drain(args) } else { list(args) }
}

fn list(args: &SpoolArgs) -> ExitCode {
    let inspection = match spool::inspect(&args.dir) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("geneva-audit: {e}");
            return ExitCode::FAILURE;
        }
    };
    for notice in &inspection.notices {
        eprintln!("geneva-audit: {notice}");
    }
    let mut out = std::io::stdout().lock();
    let mut bad = 0;
    for (n, bytes) in inspection.frames.iter().enumerate() {
        match decode_frame(bytes) {
            Ok(frame) => {
                let mut json = frame_json(&frame, false);
                if let Some(obj) = json.as_object_mut() {
                    // The spool knows no connection; the frame's place in it instead.
                    obj.remove("connection");
                    obj.insert("position".into(), (n as u64).into());
                }
                if writeln!(out, "{json}").is_err() {
                    return ExitCode::FAILURE; // stdout closed: nothing more to say
                }
            }
            Err(e) => {
                bad += 1;
                eprintln!("geneva-audit: frame {n}: {e}");
            }
        }
    }
    if bad > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Any valid id: a drain sends only the frames in the spool, which carry their own.
const DRAIN_ID: &str = "00000000-0000-0000-0000-000000000001";

fn drain(args: &SpoolArgs) -> ExitCode {
    let transport = args.endpoint.transport();
    let client = match Client::builder(DRAIN_ID)
        .transport(transport.clone())
        .spool(&args.dir)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("geneva-audit: cannot start the client: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut best = 0;
    let mut since = Instant::now();
    let stopped = loop {
        match client.flush(Duration::from_millis(200)) {
            Ok(()) => break None,
            Err(FlushError::Closed) => break Some("the client stopped working".to_owned()),
            Err(_) => {}
        }
        let delivered = client.stats().delivered;
        if delivered > best {
            (best, since) = (delivered, Instant::now());
        } else if since.elapsed() >= args.timeout {
            break Some(format!(
                "no record was delivered to {transport} for {} s (--timeout)",
                args.timeout.as_secs_f64()
            ));
        }
    };
    let report = client.close(Duration::from_secs(5));
    let left = report.stats.spool_bytes;
    eprintln!(
        "geneva-audit: {} sent from {} to {transport}{}",
        count(report.stats.spool_replayed, "record"),
        args.dir.display(),
        if left > 0 {
            format!("; {left} bytes of records are left in it")
        } else {
            String::new()
        }
    );
    if let Some(why) = stopped {
        eprintln!("geneva-audit: stopped: {why}");
    }
    if left == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
