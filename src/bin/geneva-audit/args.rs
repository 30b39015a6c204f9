//! The command line, as clap reads it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use geneva_audit::Transport;

/// Send, check and inspect Geneva audit records.
///
/// Data goes to stdout; progress and errors go to stderr.
/// Exit status: 0 on success, 1 if any line was invalid or any record not delivered,
/// 2 on a usage error.
#[derive(Debug, Parser)]
#[command(name = "geneva-audit", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a test agent; print one JSON line per received frame on stdout.
    ///
    /// It runs until SIGINT (Ctrl-C) or SIGTERM, then removes its socket file and
    /// exits with 0. When stdout falls behind it stops reading from its connections.
    Listen(ListenArgs),
    /// Send JSON records read from stdin, one per line.
    ///
    /// Every line is judged on its own: a line that breaks a rule is reported with its
    /// number and the valid lines still go. Without --unix or --tcp the records go to
    /// the agent's default socket (/var/run/mdsd/asa/default_fluent.socket if it
    /// exists, else /var/run/mdsd/default_fluent.socket). Exit status 0 only when
    /// every line was valid and every record delivered.
    Send(SendArgs),
    /// Validate JSON records read from stdin; print `line N: ok` or `line N: <rule>`.
    Check(CheckArgs),
    /// Print each line's frame as lowercase hex (`ERROR <reason>` for a bad line).
    Encode(EncodeArgs),
    /// List what a spool directory holds, one JSON line per record, oldest first; or
    /// send it to the agent with --drain.
    ///
    /// Listing changes nothing (a client may be using the directory). What opening it
    /// would repair (a torn tail, a damaged file) is said on stderr.
    Spool(SpoolArgs),
}

/// Where the agent is.
#[derive(Debug, Clone, Args)]
#[group(multiple = false)]
pub struct Endpoint {
    /// The agent's Unix domain socket.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// The agent's TCP address, as host:port.
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    #[command(flatten)]
    pub endpoint: ListenEndpoint,
    /// Print nested maps and arrays as dotted keys (`CallerIdentities.UPN.0.Identity`).
    #[arg(long)]
    pub flatten: bool,
}

/// Where to listen: one of the two is required.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct ListenEndpoint {
    /// Listen on this Unix domain socket (created; removed again on exit).
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Listen on this TCP address, as host:port.
    #[arg(long, value_name = "ADDR")]
    pub tcp: Option<String>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The agent's address; default: the library's default agent socket.
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// The service tree id to send as; default: the record.env_ikey of the first valid
    /// line. Lines with a different env_ikey are refused.
    #[arg(long, value_name = "ID", value_parser = service_tree_id)]
    pub service_tree_id: Option<String>,
    /// Give up when no record was delivered for this long while records wait; what is
    /// left is handed back (see --unsent) and the exit status is 1.
    #[arg(long, value_name = "SECONDS", value_parser = seconds, default_value = "30")]
    pub timeout: Duration,
    /// How long closing the client may take to write what is still queued.
    #[arg(long, value_name = "SECONDS", value_parser = seconds, default_value = "10")]
    pub close_timeout: Duration,
    /// Write every valid record that was not delivered to FILE, as JSON lines with
    /// their original `ts`, so that the same command can send them again.
    #[arg(long, value_name = "FILE")]
    pub unsent: Option<PathBuf>,
    /// Keep records that cannot be delivered now on disk in DIR (created if need be)
    /// instead of handing them back: an agent away longer than the queue lasts loses
    /// nothing, and the next run on DIR sends them first.
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Print the summary on stdout as one JSON object instead of text on stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SpoolArgs {
    /// The spool directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Send what the spool holds to the agent (and empty it) instead of listing it.
    #[arg(long)]
    pub drain: bool,
    /// The agent's address, for --drain; default: the library's default agent socket.
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// With --drain: give up when no record was delivered for this long.
    #[arg(long, value_name = "SECONDS", value_parser = seconds, default_value = "30")]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The service tree id records are checked against; default: record.env_ikey.
    #[arg(long, value_name = "ID", value_parser = service_tree_id)]
    pub service_tree_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct EncodeArgs {
    /// Every frame's time stamp, in Unix seconds (overrides each line's own `ts`).
    #[arg(
        long,
        value_name = "SECONDS",
        conflicts_with = "default_ts",
        allow_negative_numbers = true
    )]
    pub ts: Option<i64>,
    /// The time stamp of lines without their own `ts`; default: the current time.
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub default_ts: Option<i64>,
    /// The service tree id for lines without record.env_ikey.
    #[arg(long, value_name = "ID", value_parser = service_tree_id)]
    pub service_tree_id: Option<String>,
}

/// Where an agent is, once the command line has been read.
#[derive(Debug, Clone)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl Endpoint {
    /// The transport given, else the library's default agent socket.
    pub fn transport(&self) -> Transport {
        match (&self.unix, &self.tcp) {
            (Some(path), _) => Transport::Unix(path.clone()),
            (None, Some(addr)) => Transport::Tcp(addr.clone()),
            (None, None) => Transport::default_unix(),
        }
    }
}

impl ListenEndpoint {
    /// The address given; clap makes sure there is exactly one (the `--unix` path is
    /// the fallback only to stay total).
    pub fn address(&self) -> Address {
        match (&self.unix, &self.tcp) {
            (None, Some(addr)) => Address::Tcp(addr.clone()),
            (unix, _) => Address::Unix(unix.clone().unwrap_or_default()),
        }
    }
}

/// A service tree id the library accepts, in its canonical form.
pub fn service_tree_id(text: &str) -> Result<String, String> {
    geneva_audit::validate_service_tree_id(text).map_err(|e| e.to_string())
}

/// A number of seconds, fractions allowed.
pub fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}
