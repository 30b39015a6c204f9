//! Records the Rust toolchain's version for the heartbeat's `Language` field.
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_owned))
        .map_or_else(|| "rust".to_owned(), |v| format!("rust{v}"));
    println!("cargo:rustc-env=GENEVA_AUDIT_RUSTC={version}");
    println!("cargo:rerun-if-changed=build.rs");
}
