//! Reading stdin line by line, and the checks every command applies to a record line.

use std::io::{self, BufRead};
use std::time::{SystemTime, UNIX_EPOCH};

use geneva_audit::ValidationError;
use geneva_audit::json::{JsonBody, JsonMessage, parse_line};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Calls `each(line_number, text)` for every non-blank line of stdin, numbered from 1.
/// Returns false if stdin could not be read to the end.
pub fn for_each_line(mut each: impl FnMut(usize, &str) -> bool) -> bool {
    let stdin = io::stdin();
    let mut reader = stdin.lock();
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => {
                eprintln!("geneva-audit: reading stdin: {e}");
                return false;
            }
        }
        n += 1;
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        if !each(n, text) {
            return true;
        }
    }
}

/// The service tree id a record line is sent under: its own `env_ikey` if it has one
/// (which must not be blank), else `default`.
pub fn line_service_tree_id<'a>(
    msg: &'a JsonMessage,
    default: Option<&'a str>,
) -> Result<&'a str, ValidationError> {
    let id = msg
        .service_tree_id
        .as_deref()
        .or(default)
        .ok_or(ValidationError::MissingServiceTreeId)?;
    geneva_audit::validate_service_tree_id(id)?;
    Ok(id)
}

/// Checks a line as `send` would: it parses, is a record, has a service tree id and
/// passes every validation rule. The error is the rule it breaks.
pub fn check_line(text: &str, default_id: Option<&str>) -> Result<JsonMessage, String> {
    let msg = parse_line(text).map_err(|e| e.to_string())?;
    let record = match &msg.body {
        JsonBody::Record(r) => r,
        _ => return Err(ValidationError::NotSendable(msg.kind).to_string()),
    };
    line_service_tree_id(&msg, default_id).map_err(|e| e.to_string())?;
    record.validate().map_err(|e| e.to_string())?;
    Ok(msg)
}
