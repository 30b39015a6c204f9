//! The `geneva-audit` command, run as a separate process: one module per subcommand.

#[path = "../common/mod.rs"]
mod common;

mod check;
mod docs;
mod encode;
mod listen;
mod send;
mod spool;
mod usage;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value as Json;

use common::{PATIENCE, output_within};

pub const BIN: &str = env!("CARGO_BIN_EXE_geneva-audit");
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// Golden lines the record model cannot express although the reference validates them.
pub const INEXPRESSIBLE: &[&str] = &["cp_out_of_range_enums"];

pub fn run(args: &[&str], stdin: impl AsRef<[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start geneva-audit");
    let mut stdin_pipe = child.stdin.take().expect("stdin");
    let input = stdin.as_ref().to_vec();
    // Write from another thread so a child that fills its stdout pipe cannot deadlock us.
    let writer = std::thread::spawn(move || {
        let _ = stdin_pipe.write_all(&input);
    });
    let out = output_within(child, PATIENCE);
    writer.join().expect("stdin writer");
    out
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn golden_lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(Path::new(FIXTURES).join(name))
        .expect("read fixture")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Golden line 1, a valid data-plane record, with its operation name set to `name`.
pub fn valid_line(name: &str) -> String {
    let mut v: Json = serde_json::from_str(&golden_lines("golden.jsonl")[0]).unwrap();
    v["record"]["OperationName"] = Json::String(name.to_owned());
    v.to_string()
}

/// A record without an operation category.
pub fn invalid_line() -> String {
    let mut v: Json = serde_json::from_str(&golden_lines("golden.jsonl")[0]).unwrap();
    v["record"]["OperationCategories"] = Json::Array(vec![]);
    v.to_string()
}

/// Kills the child when the test ends, however it ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A service tree id other than `common::STI`.
pub const OTHER_STI: &str = "3f2b8c4e-9a1d-4e6f-8b7c-2d5e9f0a1b3c";

/// A valid line with a given service tree id (`env_ikey`).
pub fn line_with_id(name: &str, id: &str) -> String {
    let mut v: Json = serde_json::from_str(&valid_line(name)).unwrap();
    v["record"]["env_ikey"] = Json::String(id.to_owned());
    v.to_string()
}

/// A valid line whose operation name holds a byte that is not UTF-8.
pub fn non_utf8_line(name: &str) -> Vec<u8> {
    let line = valid_line(name);
    let at = line.find(name).unwrap();
    let mut bytes = line.into_bytes();
    bytes.insert(at, 0xff);
    bytes
}

/// Lines joined with newlines, as bytes.
pub fn input<L: AsRef<[u8]>>(lines: &[L]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line.as_ref());
        out.push(b'\n');
    }
    out
}
