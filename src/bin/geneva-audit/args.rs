//! The command line, as clap reads it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

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
    Listen(ListenArgs),
    /// Send JSON records read from stdin, one per line.
    Send(SendArgs),
    /// Validate JSON records read from stdin; print `line N: ok` or `line N: <rule>`.
    Check(CheckArgs),
    /// Print each line's frame as lowercase hex (`ERROR <reason>` for a bad line).
    Encode(EncodeArgs),
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
    #[command(flatten)]
    pub endpoint: ListenEndpoint,
    /// The service tree id to send as; default: the first line's record.env_ikey.
    #[arg(long, value_name = "ID")]
    pub service_tree_id: Option<String>,
    /// How long closing the client may take to write what is queued.
    #[arg(long, value_name = "SECONDS", value_parser = seconds, default_value = "10")]
    pub close_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The service tree id records are checked against; default: record.env_ikey.
    #[arg(long, value_name = "ID")]
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
    #[arg(long, value_name = "ID")]
    pub service_tree_id: Option<String>,
}

/// Where an agent is, once the command line has been read.
#[derive(Debug, Clone)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String),
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

/// A number of seconds, fractions allowed.
pub fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}
