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
