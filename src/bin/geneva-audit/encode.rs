//! `encode`: prints the frame of every JSON line as lowercase hex.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;

use geneva_audit::Encoder;
use geneva_audit::json::{JsonBody, parse_line};

use crate::args::EncodeArgs;
use crate::input::{for_each_line, line_service_tree_id, now};

/// A service tree id for frames that do not carry one (heartbeat, diagnostic).
const NO_SERVICE_TREE_ID: &str = "-";

fn encode_line(text: &str, opts: &EncodeArgs) -> Result<String, String> {
    let msg = parse_line(text).map_err(|e| e.to_string())?;
    let ts = opts.ts.or(msg.ts).or(opts.default_ts).unwrap_or_else(now);
    let frame_hex = match &msg.body {
        JsonBody::Record(record) => {
            let id = line_service_tree_id(&msg, opts.service_tree_id.as_deref())
                .map_err(|e| e.to_string())?;
            record.validate().map_err(|e| e.to_string())?;
            let mut encoder = Encoder::new(id.to_owned()).map_err(|e| e.to_string())?;
            hex(encoder.encode(ts, record))
        }
        JsonBody::Heartbeat(hb) => {
            let mut encoder = Encoder::new(NO_SERVICE_TREE_ID).map_err(|e| e.to_string())?;
            hex(encoder.encode_heartbeat(ts, hb))
        }
        JsonBody::Diagnostic => {
            let mut encoder = Encoder::new(NO_SERVICE_TREE_ID).map_err(|e| e.to_string())?;
            hex(encoder.encode_diagnostic(ts))
        }
    };
    Ok(frame_hex)
}

pub fn run(opts: &EncodeArgs) -> ExitCode {
    let mut out = io::stdout().lock();
    let mut failed = false;
    let complete = for_each_line(|n, text| {
        let line = match encode_line(text, opts) {
            Ok(h) => h,
            Err(reason) => {
                eprintln!("line {n}: {reason}");
                failed = true;
                format!("ERROR {reason}")
            }
        };
        if writeln!(out, "{line}").is_err() {
            failed = true;
            return false;
        }
        true
    });
    if failed || !complete {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
