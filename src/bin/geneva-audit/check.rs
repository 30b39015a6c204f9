//! `check`: judges JSON records from stdin by every rule `send` applies, without
//! sending them.

use std::io::{self, Write};
use std::process::ExitCode;

use crate::args::CheckArgs;
use crate::input::for_each_line;
use crate::judge::Judge;

pub fn run(args: &CheckArgs) -> ExitCode {
    let mut judge = Judge::new(args.service_tree_id.clone());
    let mut invalid = 0usize;
    let mut out = io::stdout().lock();
    let mut write_failed = false;
    let complete = for_each_line(|n, line| {
        let verdict = match judge.judge(line) {
            Ok(_) => format!("line {n}: ok"),
            Err(rule) => {
                invalid += 1;
                format!("line {n}: {rule}")
            }
        };
        if writeln!(out, "{verdict}").is_err() {
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
