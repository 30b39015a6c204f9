//! `geneva-audit`: a command line tool around the library.
//!
//! * `listen`: runs the test agent and prints every frame it receives as a JSON line.
//! * `send`: reads JSON records (the golden-file shape) from stdin and sends them.
//! * `check`: validates JSON records from stdin without sending them.
//! * `encode`: prints the frame of every JSON line as lowercase hex.
//!
//! Data goes to stdout; progress and errors go to stderr. A usage error exits with 2.

use std::fmt::Write as _;
use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use geneva_audit::agent::rmpv::Value as Mp;
use geneva_audit::agent::{ReceivedFrame, TestAgent};
use geneva_audit::json::{JsonBody, JsonMessage, parse_line};
use geneva_audit::{Client, Encoder, SendError, ValidationError};
use serde_json::{Map, Value as Json};

const USAGE: &str = "\
usage:
  geneva-audit listen (--unix PATH | --tcp ADDR) [--flatten]
      Run a test agent; print one JSON line per received frame on stdout.
  geneva-audit send (--unix PATH | --tcp ADDR) [--service-tree-id ID] [--close-timeout SECONDS]
      Send JSON records read from stdin, one per line. The service tree id is
      --service-tree-id, else the first line's record.env_ikey.
  geneva-audit check [--service-tree-id ID]
      Validate JSON records read from stdin; print `line N: ok` or `line N: <rule>`.
  geneva-audit encode [--ts SECONDS | --default-ts SECONDS] [--service-tree-id ID]
      Print each line's frame as lowercase hex (`ERROR <reason>` for a bad line).
      --ts sets every frame's time stamp; --default-ts only that of lines without
      their own `ts`; otherwise a line without `ts` gets the current time.
  geneva-audit --help

Exit status: 0 on success, 1 if any line was invalid or unsent, 2 on a usage error.
";

/// A command line that could not be understood.
struct Usage(String);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(Usage(msg)) => {
            eprintln!("geneva-audit: {msg}");
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, Usage> {
    let Some((command, rest)) = args.split_first() else {
        return Err(Usage("missing command".into()));
    };
    if rest.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let opts = Options::parse(rest)?;
    match command.as_str() {
        "--help" | "-h" | "help" => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        "listen" => {
            opts.only(&["--unix", "--tcp", "--flatten"])?;
            Ok(listen(&opts.endpoint()?, opts.flatten))
        }
        "send" => {
            opts.only(&["--unix", "--tcp", "--service-tree-id", "--close-timeout"])?;
            Ok(send(&opts))
        }
        "check" => {
            opts.only(&["--service-tree-id"])?;
            Ok(check(&opts))
        }
        "encode" => {
            opts.only(&["--ts", "--default-ts", "--service-tree-id"])?;
            if opts.ts.is_some() && opts.default_ts.is_some() {
                return Err(Usage("--ts and --default-ts exclude each other".into()));
            }
            Ok(encode(&opts))
        }
        other => Err(Usage(format!("unknown command {other:?}"))),
    }
}

// ---------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Endpoint {
    Unix(String),
    Tcp(String),
}

#[derive(Debug, Default)]
struct Options {
    unix: Option<String>,
    tcp: Option<String>,
    flatten: bool,
    service_tree_id: Option<String>,
    ts: Option<i64>,
    default_ts: Option<i64>,
    close_timeout: Option<Duration>,
    /// Every option given, to refuse those the command does not take.
    given: Vec<&'static str>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, Usage> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            // `--name=value` or `--name value`.
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
                _ => (arg.as_str(), None),
            };
            let mut value = |name: &str| -> Result<String, Usage> {
                match inline.clone().or_else(|| it.next().cloned()) {
                    Some(v) => Ok(v),
                    None => Err(Usage(format!("{name} needs a value"))),
                }
            };
            let key: &'static str = match name {
                "--unix" => {
                    o.unix = Some(value(name)?);
                    "--unix"
                }
                "--tcp" => {
                    o.tcp = Some(value(name)?);
                    "--tcp"
                }
                "--flatten" => {
                    if inline.is_some() {
                        return Err(Usage("--flatten takes no value".into()));
                    }
                    o.flatten = true;
                    "--flatten"
                }
                "--service-tree-id" => {
                    o.service_tree_id = Some(value(name)?);
                    "--service-tree-id"
                }
                "--ts" => {
                    o.ts = Some(parse_i64(name, &value(name)?)?);
                    "--ts"
                }
                "--default-ts" => {
                    o.default_ts = Some(parse_i64(name, &value(name)?)?);
                    "--default-ts"
                }
                "--close-timeout" => {
                    let v = value(name)?;
                    let secs: f64 = v
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s < 1e9)
                        .ok_or_else(|| Usage(format!("--close-timeout: {v:?} is not seconds")))?;
                    o.close_timeout = Some(Duration::from_secs_f64(secs));
                    "--close-timeout"
                }
                other => return Err(Usage(format!("unknown argument {other:?}"))),
            };
            if o.given.contains(&key) {
                return Err(Usage(format!("{key} given twice")));
            }
            o.given.push(key);
        }
        Ok(o)
    }

    fn only(&self, allowed: &[&str]) -> Result<(), Usage> {
        match self.given.iter().find(|g| !allowed.contains(g)) {
            Some(g) => Err(Usage(format!("this command does not take {g}"))),
            None => Ok(()),
        }
    }

    fn endpoint(&self) -> Result<Endpoint, Usage> {
        match (&self.unix, &self.tcp) {
            (Some(p), None) => Ok(Endpoint::Unix(p.clone())),
            (None, Some(a)) => Ok(Endpoint::Tcp(a.clone())),
            (None, None) => Err(Usage("one of --unix PATH or --tcp ADDR is required".into())),
            (Some(_), Some(_)) => Err(Usage("--unix and --tcp exclude each other".into())),
        }
    }
}

fn parse_i64(name: &str, v: &str) -> Result<i64, Usage> {
    v.parse()
        .map_err(|_| Usage(format!("{name}: {v:?} is not an integer number of seconds")))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

// ---------------------------------------------------------------------------------------
// Reading and checking lines
// ---------------------------------------------------------------------------------------

/// Calls `each(line_number, text)` for every non-blank line of stdin, numbered from 1.
/// Returns false if stdin could not be read to the end.
fn for_each_line(mut each: impl FnMut(usize, &str) -> bool) -> bool {
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
fn line_service_tree_id<'a>(
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
fn check_line(text: &str, default_id: Option<&str>) -> Result<JsonMessage, String> {
    let msg = parse_line(text).map_err(|e| e.to_string())?;
    let record = match &msg.body {
        JsonBody::Record(r) => r,
        _ => return Err(ValidationError::NotSendable(msg.kind).to_string()),
    };
    line_service_tree_id(&msg, default_id).map_err(|e| e.to_string())?;
    record.validate().map_err(|e| e.to_string())?;
    Ok(msg)
}

// ---------------------------------------------------------------------------------------
// check
// ---------------------------------------------------------------------------------------

fn check(opts: &Options) -> ExitCode {
    let mut invalid = 0usize;
    let mut out = io::stdout().lock();
    let mut write_failed = false;
    let complete = for_each_line(|n, text| {
        let line = match check_line(text, opts.service_tree_id.as_deref()) {
            Ok(_) => format!("line {n}: ok"),
            Err(rule) => {
                invalid += 1;
                format!("line {n}: {rule}")
            }
        };
        if writeln!(out, "{line}").is_err() {
            write_failed = true;
            return false;
        }
        true
    });
    if invalid > 0 || !complete || write_failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

// ---------------------------------------------------------------------------------------
// encode
// ---------------------------------------------------------------------------------------

/// A service tree id for frames that do not carry one (heartbeat, diagnostic).
const NO_SERVICE_TREE_ID: &str = "-";

fn encode_line(text: &str, opts: &Options) -> Result<String, String> {
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

fn encode(opts: &Options) -> ExitCode {
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

// ---------------------------------------------------------------------------------------
// send
// ---------------------------------------------------------------------------------------

/// How long one `send_timeout` waits before it tries again (and says so).
const SEND_WAIT: Duration = Duration::from_secs(1);

fn send(opts: &Options) -> ExitCode {
    let endpoint = match opts.endpoint() {
        Ok(e) => e,
        Err(Usage(msg)) => {
            eprintln!("geneva-audit: {msg}");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let close_timeout = opts.close_timeout.unwrap_or(Duration::from_secs(10));
    let mut client: Option<Client> = None;
    let mut service_tree_id = opts.service_tree_id.clone();
    let mut invalid = 0usize;
    let mut unsent_unqueued = 0usize;
    let mut fatal = false;
    let mut first = true;

    let complete = for_each_line(|n, text| {
        if first {
            first = false;
            if service_tree_id.is_none() {
                service_tree_id = parse_line(text).ok().and_then(|m| m.service_tree_id);
            }
            let Some(id) = service_tree_id.clone() else {
                eprintln!(
                    "geneva-audit: no service tree id: pass --service-tree-id or set \
                     record.env_ikey on the first line"
                );
                fatal = true;
                return false;
            };
            let builder = Client::builder(id);
            let builder = match &endpoint {
                Endpoint::Unix(p) => builder.unix_socket(p),
                Endpoint::Tcp(a) => builder.tcp(a.clone()),
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
        let msg = match check_line(text, service_tree_id.as_deref()) {
            Ok(m) => m,
            Err(rule) => {
                eprintln!("line {n}: {rule}");
                invalid += 1;
                return true;
            }
        };
        if let (Some(own), Some(id)) = (msg.service_tree_id.as_deref(), &service_tree_id) {
            if own != id {
                eprintln!("line {n}: note: env_ikey {own:?} differs; sent as {id:?}");
            }
        }
        let JsonBody::Record(mut record) = msg.body else {
            return true; // check_line let only records through
        };
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

// ---------------------------------------------------------------------------------------
// listen
// ---------------------------------------------------------------------------------------

/// How long one wait on the agent lasts before it looks again.
const LISTEN_WAIT: Duration = Duration::from_secs(1);

fn listen(endpoint: &Endpoint, flatten: bool) -> ExitCode {
    let agent = match endpoint {
        Endpoint::Unix(p) => TestAgent::unix(p),
        Endpoint::Tcp(a) => TestAgent::tcp(a.as_str()),
    };
    let agent = match agent {
        Ok(a) => a,
        Err(e) => {
            eprintln!("geneva-audit: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    match (agent.path(), agent.local_addr()) {
        (Some(p), _) => eprintln!("geneva-audit: listening on {}", p.display()),
        (_, Some(a)) => eprintln!("geneva-audit: listening on {a}"),
        _ => {}
    }
    loop {
        // Wakes when anything arrives; the timeout only bounds the wait.
        let _ = agent.wait_for("frames or errors", LISTEN_WAIT, |s| {
            s.frames > 0 || s.errors > 0
        });
        for error in agent.take_errors() {
            eprintln!("geneva-audit: frame error: {error}");
        }
        let frames = agent.take_frames();
        if frames.is_empty() {
            continue;
        }
        let mut out = io::stdout().lock();
        for frame in &frames {
            let line = frame_json(frame, flatten).to_string();
            if writeln!(out, "{line}").is_err() {
                return ExitCode::FAILURE;
            }
        }
        if out.flush().is_err() {
            return ExitCode::FAILURE;
        }
    }
}

fn frame_json(frame: &ReceivedFrame, flatten: bool) -> Json {
    let body = if flatten {
        let mut flat = Map::new();
        flatten_into(&mut flat, None, &frame.body);
        Json::Object(flat)
    } else {
        to_json(&frame.body)
    };
    let mut obj = Map::new();
    obj.insert("tag".into(), Json::String(frame.tag.clone()));
    obj.insert("ts".into(), Json::from(frame.ts));
    obj.insert("connection".into(), Json::from(frame.connection));
    obj.insert("body".into(), body);
    Json::Object(obj)
}

/// A map key as text: strings as they are, anything else as its JSON text.
fn key_text(key: &Mp) -> String {
    match key {
        Mp::String(s) => match s.as_str() {
            Some(s) => s.to_owned(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        },
        other => to_json(other).to_string(),
    }
}

/// Converts a MessagePack value to JSON: binary as base64 text, ext as
/// `{"$ext": type, "$data": base64}`, non-finite floats as null.
fn to_json(v: &Mp) -> Json {
    match v {
        Mp::Nil => Json::Null,
        Mp::Boolean(b) => Json::Bool(*b),
        Mp::Integer(i) => {
            if let Some(n) = i.as_i64() {
                Json::from(n)
            } else if let Some(n) = i.as_u64() {
                Json::from(n)
            } else {
                Json::Null
            }
        }
        Mp::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number),
        Mp::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Mp::String(s) => Json::String(match s.as_str() {
            Some(s) => s.to_owned(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        }),
        Mp::Binary(b) => Json::String(base64(b)),
        Mp::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Mp::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (key_text(k), to_json(v)))
                .collect(),
        ),
        Mp::Ext(ty, data) => {
            let mut obj = Map::new();
            obj.insert("$ext".into(), Json::from(*ty));
            obj.insert("$data".into(), Json::String(base64(data)));
            Json::Object(obj)
        }
    }
}

/// Nested maps and arrays become dotted keys: `CallerIdentities.UPN.0.Identity`. Empty
/// maps and arrays are kept as values so that they do not vanish.
fn flatten_into(out: &mut Map<String, Json>, prefix: Option<&str>, v: &Mp) {
    let join = |k: &str| match prefix {
        Some(p) => format!("{p}.{k}"),
        None => k.to_owned(),
    };
    match v {
        Mp::Map(entries) if !entries.is_empty() => {
            for (k, v) in entries {
                flatten_into(out, Some(&join(&key_text(k))), v);
            }
        }
        Mp::Array(items) if !items.is_empty() && prefix.is_some() => {
            for (i, v) in items.iter().enumerate() {
                flatten_into(out, Some(&join(&i.to_string())), v);
            }
        }
        other => {
            let key = prefix.map_or_else(String::new, str::to_owned);
            out.insert(key, to_json(other));
        }
    }
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0);
                s.push(char::from(ALPHABET[idx]));
            } else {
                s.push('=');
            }
        }
    }
    s
}
