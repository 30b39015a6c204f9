//! `encode`: one hex frame or `ERROR <reason>` per line.

use serde_json::Value as Json;

use crate::{INEXPRESSIBLE, golden_lines, run, text, valid_line};

#[test]
fn encode_matches_the_golden_hex() {
    let jsonl = golden_lines("golden.jsonl");
    let hex = golden_lines("golden.hex");
    let meta: Vec<Json> = golden_lines("golden.meta.jsonl")
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(jsonl.len(), hex.len());
    assert_eq!(jsonl.len(), meta.len());

    // The golden frames were made with ts 1700000000 for lines without their own `ts`:
    // --default-ts keeps the lines' own time stamps (1234, 0, 4102444800) honest.
    let mut input = jsonl.join("\n");
    input.push('\n');
    let out = run(&["encode", "--default-ts", "1700000000"], &input);
    let stdout = text(&out.stdout);
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(got.len(), jsonl.len(), "one output line per input line");

    let mut compared = 0;
    let mut errors = 0;
    for (i, m) in meta.iter().enumerate() {
        let name = m["name"].as_str().unwrap();
        let validate = &m["record_validate"];
        let ok = validate.is_null() || validate == "ok";
        if !ok || INEXPRESSIBLE.contains(&name) {
            assert!(
                got[i].starts_with("ERROR "),
                "line {} ({name}): expected ERROR, got {}",
                i + 1,
                got[i]
            );
            errors += 1;
        } else if m["byte_exact_comparable"] == true {
            assert_eq!(got[i], hex[i], "line {} ({name})", i + 1);
            compared += 1;
        }
    }
    assert_eq!(compared, 14, "lines compared byte for byte");
    assert_eq!(errors, 3);
    assert_eq!(out.status.code(), Some(1), "some lines are ERROR");
}

#[test]
fn encode_ts_overrides_the_lines_own() {
    let line = valid_line("x");
    let out = run(&["encode", "--ts", "1234"], format!("{line}\n"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // [tag, [[ts, ...: ts is an int64 after the tag and two array headers.
    assert!(text(&out.stdout).contains("9192d300000000000004d2"));
}
