//! `geneva-audit`: a command line tool around the library.
//!
//! * `listen`: runs the test agent and prints every frame it receives as a JSON line.
//! * `send`: reads JSON records (the golden-file shape) from stdin and sends them.
//! * `check`: validates JSON records from stdin without sending them.
//! * `encode`: prints the frame of every JSON line as lowercase hex.
//! * `spool`: lists what a spool directory holds, or drains it to the agent.
//!
//! Data goes to stdout; progress and errors go to stderr. A usage error exits with 2.

mod args;
mod check;
mod encode;
mod frame_json;
mod handback;
mod input;
mod judge;
mod listen;
mod notices;
mod progress;
mod send;
mod spool;
mod summary;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    // clap prints its own message and exits with 2 on a usage error, 0 for --help.
    let cli = Cli::parse();
    match cli.command {
        Command::Listen(a) => listen::run(&a),
        Command::Send(a) => send::run(&a),
        Command::Check(a) => check::run(&a),
        Command::Encode(a) => encode::run(&a),
        Command::Spool(a) => spool::run(&a),
    }
}
