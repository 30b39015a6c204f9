//! `check`: validates JSON records from stdin without sending them.

use std::io::{self, Write};
use std::process::ExitCode;

use crate::args::CheckArgs;
use crate::input::{check_line, for_each_line};

pub fn run(opts: &CheckArgs) -> ExitCode {
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
