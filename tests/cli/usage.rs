//! The command line itself: help, version, usage errors.

use crate::{run, text};

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    for args in [
        &["bogus"][..],
        &[],
        &["check", "--frob"],
        &["encode", "--ts"],
        &["encode", "--ts", "soon"],
        &["listen"],
        &["listen", "--unix", "a", "--tcp", "b"],
        &["check", "--unix", "a"],
    ] {
        let out = run(args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("error:") || stderr.contains("Usage:"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = run(&["--help"], "");
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("listen"));
}

#[test]
fn version_and_each_commands_own_help() {
    let out = run(&["--version"], "");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        format!("geneva-audit {}\n", env!("CARGO_PKG_VERSION"))
    );
    for args in [&["help", "send"][..], &["send", "--help"]] {
        let out = run(args, "");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let help = text(&out.stdout);
        for option in ["--unix", "--tcp", "--timeout", "--unsent", "--json"] {
            assert!(help.contains(option), "{args:?} lacks {option}: {help}");
        }
        assert!(!help.contains("--flatten"), "{args:?}: {help}");
    }
    let out = run(&["help", "listen"], "");
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(
        help.contains("--flatten") && !help.contains("--unsent"),
        "{help}"
    );
    let out = run(&["help", "encode"], "");
    assert!(text(&out.stdout).contains("--default-ts"));
}
