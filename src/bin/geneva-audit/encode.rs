//! `encode`: prints the frame of every JSON line as lowercase hex.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::process::ExitCode;

use geneva_audit::Encoder;
use geneva_audit::json::JsonBody;
use geneva_audit::validate_service_tree_id;

use crate::args::EncodeArgs;
use crate::input::{for_each_line, now};
use crate::judge::parse;

/// A service tree id for frames that do not carry one (heartbeat, diagnostic).
const NO_SERVICE_TREE_ID: &str = "-";

fn encode_line(line: &[u8], opts: &EncodeArgs) -> Result<String, String> {
    let msg = parse(line)?;
    let ts = opts.ts.or(msg.ts).or(opts.default_ts).unwrap_or_else(now);
    let frame_hex = match &msg.body {
        JsonBody::Record(record) => {
            // Each frame stands alone: a line's own id, else --service-tree-id.
            let id = msg
                .service_tree_id
                .as_deref()
                .or(opts.service_tree_id.as_deref())
                .ok_or("no service tree id: pass --service-tree-id or set record.env_ikey")?;
            validate_service_tree_id(id).map_err(|e| format!("record.env_ikey: {e}"))?;
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
