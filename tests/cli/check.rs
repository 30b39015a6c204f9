//! `check`: `line N: ok` or `line N: <rule>`, by every rule `send` applies.

use crate::{OTHER_STI, input, invalid_line, line_with_id, non_utf8_line, run, text, valid_line};

#[test]
fn check_reports_the_invalid_line() {
    let input = format!("{}\n{}\n", valid_line("a"), invalid_line());
    let out = run(&["check"], &input);
    assert_eq!(
        text(&out.stdout),
        "line 1: ok\nline 2: at least one operation category is required\n"
    );
    assert_eq!(out.status.code(), Some(1));

    let out = run(&["check"], "{not json\n");
    assert!(text(&out.stdout).starts_with("line 1: not valid JSON"));
    assert_eq!(out.status.code(), Some(1));

    let out = run(&["check"], format!("{}\n", valid_line("a")));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn check_judges_every_line_on_its_own_by_every_rule_send_applies() {
    let big = valid_line(&"x".repeat(2 * 1024 * 1024));
    let other = line_with_id("b", OTHER_STI);
    let lines = [
        br#"{"type": "DataPlane",}"#.to_vec(),
        valid_line("a").into_bytes(),
        non_utf8_line("ab"),
        other.into_bytes(),
        big.into_bytes(),
        valid_line("c").into_bytes(),
    ];
    let out = run(&["check"], input(&lines));
    let stdout = text(&out.stdout);
    let verdicts: Vec<&str> = stdout.lines().collect();
    assert_eq!(verdicts.len(), 6, "{stdout}");
    assert_eq!(
        verdicts[0],
        "line 1: not valid JSON: trailing comma at column 22"
    );
    assert_eq!(verdicts[1], "line 2: ok");
    assert!(
        verdicts[2].starts_with("line 3: not valid UTF-8 at column "),
        "{}",
        verdicts[2]
    );
    assert!(
        verdicts[3].starts_with(&format!("line 4: record.env_ikey {OTHER_STI:?} differs")),
        "{}",
        verdicts[3]
    );
    assert!(
        verdicts[4].starts_with("line 5: the record's frame is "),
        "{}",
        verdicts[4]
    );
    assert_eq!(verdicts[5], "line 6: ok");
    assert_eq!(out.status.code(), Some(1));
}
