//! The rules a line must pass to be sent, shared by `send` and `check` (and the parsing
//! part by `encode`). Each line is judged on its own; a refusal is the rule it breaks.

use geneva_audit::json::{JsonBody, JsonMessage, parse_value};
use geneva_audit::{Record, ValidationError, encoded_len, validate_service_tree_id};
use serde_json::Value as Json;

/// The largest frame `send` hands the client (the client's own default), so that
/// `check` refuses exactly what `send` would.
pub const MAX_FRAME_SIZE: usize = 1024 * 1024;

/// Parses a line of the golden-file shape. Invalid UTF-8 is refused, never replaced;
/// JSON syntax errors name the column, not the "line 1" of a one-line parse.
pub fn parse(line: &[u8]) -> Result<JsonMessage, String> {
    let text = std::str::from_utf8(line).map_err(|e| {
        format!(
            "not valid UTF-8 at column {} (the line is refused, not repaired)",
            e.valid_up_to() + 1
        )
    })?;
    let json: Json = serde_json::from_str(text).map_err(|e| syntax_error(&e))?;
    parse_value(json).map_err(|e| e.to_string())
}

/// serde_json's message without its `at line 1 column N`, then the column.
fn syntax_error(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = message.strip_suffix(&suffix).unwrap_or(&message);
    if e.column() == 0 {
        format!("not valid JSON: {message}")
    } else {
        format!("not valid JSON: {message} at column {}", e.column())
    }
}

/// A line that passed every rule.
#[derive(Debug)]
pub struct Accepted {
    pub record: Record,
}

/// Judges record lines one by one. The service tree id in use is `--service-tree-id`,
/// else the `record.env_ikey` of the first line that passes every rule; a line whose
/// own id differs from it is refused.
#[derive(Debug)]
pub struct Judge {
    service_tree_id: Option<String>,
}

impl Judge {
    pub fn new(service_tree_id: Option<String>) -> Self {
        Judge { service_tree_id }
    }

    /// The service tree id in use, once known.
    pub fn service_tree_id(&self) -> Option<&str> {
        self.service_tree_id.as_deref()
    }

    /// Checks a line as `send` would; the error is the rule it breaks.
    pub fn judge(&mut self, line: &[u8]) -> Result<Accepted, String> {
        let msg = parse(line)?;
        let JsonBody::Record(record) = msg.body else {
            return Err(ValidationError::NotSendable(msg.kind).to_string());
        };
        let id = match (msg.service_tree_id, &self.service_tree_id) {
            (Some(own), Some(in_use)) if own != *in_use => {
                return Err(format!(
                    "record.env_ikey {own:?} differs from the service tree id in use {in_use:?}"
                ));
            }
            (Some(own), _) => own,
            (None, Some(in_use)) => in_use.clone(),
            (None, None) => {
                return Err("no service tree id: pass --service-tree-id or set \
                            record.env_ikey"
                    .to_owned());
            }
        };
        // Canonical already (the JSON form and --service-tree-id are parsed as UUIDs).
        let id = validate_service_tree_id(&id).map_err(|e| format!("record.env_ikey: {e}"))?;
        record.validate().map_err(|e| e.to_string())?;
        let size = encoded_len(&id, &record);
        if size > MAX_FRAME_SIZE {
            return Err(format!(
                "the record's frame is {size} bytes, over the maximum of {MAX_FRAME_SIZE}"
            ));
        }
        self.service_tree_id.get_or_insert(id);
        Ok(Accepted { record })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SVC: &str = "e6c9fcb1-7f08-4c1d-9e7a-123456789abc";
    const OTHER: &str = "3f2b8c4e-9a1d-4e6f-8b7c-2d5e9f0a1b3c";

    fn line(name: &str, id: Option<&str>) -> String {
        let id = id.map_or(String::new(), |id| format!(r#""env_ikey": "{id}", "#));
        format!(
            r#"{{"type": "DataPlane", "record": {{{id}"OperationName": "{name}",
            "OperationCategories": ["UserManagement"], "OperationResult": "Success",
            "OperationType": "Read", "CallerIpAddress": "10.0.0.1",
            "CallerIdentities": {{"UPN": [{{"Identity": "a@b.c", "Description": "d"}}]}},
            "TargetResources": {{"VM": [{{"Name": "vm1"}}]}}, "CallerAgent": "x",
            "OperationAccessLevel": "r", "CallerAccessLevels": ["r"]}}}}"#
        )
        .replace('\n', " ")
    }

    #[test]
    fn the_sample_line_is_valid() {
        let mut judge = Judge::new(None);
        judge.judge(line("a", Some(SVC)).as_bytes()).unwrap();
        assert_eq!(judge.service_tree_id(), Some(SVC));
    }

    #[test]
    fn a_bad_first_line_leaves_the_id_to_the_next() {
        let mut judge = Judge::new(None);
        assert!(judge.judge(b"{not json").is_err());
        assert!(judge.judge(line("", Some(OTHER)).as_bytes()).is_err());
        judge.judge(line("b", Some(SVC)).as_bytes()).unwrap();
        judge.judge(line("c", None).as_bytes()).unwrap();
        assert_eq!(judge.service_tree_id(), Some(SVC));
    }

    #[test]
    fn a_different_service_tree_id_is_refused() {
        let mut judge = Judge::new(Some(SVC.into()));
        let e = judge.judge(line("a", Some(OTHER)).as_bytes()).unwrap_err();
        assert_eq!(
            e,
            format!("record.env_ikey {OTHER:?} differs from the service tree id in use {SVC:?}")
        );
    }

    #[test]
    fn no_service_tree_id_is_refused() {
        let e = Judge::new(None)
            .judge(line("a", None).as_bytes())
            .unwrap_err();
        assert!(e.starts_with("no service tree id"), "{e}");
    }

    #[test]
    fn invalid_utf8_is_refused_with_its_column() {
        let mut bytes = line("a", Some(SVC)).into_bytes();
        let at = bytes.iter().position(|&b| b == b'a').unwrap();
        bytes.insert(at, 0xff);
        let e = Judge::new(None).judge(&bytes).unwrap_err();
        assert!(
            e.starts_with(&format!("not valid UTF-8 at column {}", at + 1)),
            "{e}"
        );
    }

    #[test]
    fn json_errors_name_the_column_only() {
        let e = parse(br#"{"type": "DataPlane",}"#).unwrap_err();
        assert_eq!(e, "not valid JSON: trailing comma at column 22");
    }

    #[test]
    fn a_record_over_the_frame_size_is_refused() {
        let big = "x".repeat(MAX_FRAME_SIZE);
        let e = Judge::new(None)
            .judge(line(&big, Some(SVC)).as_bytes())
            .unwrap_err();
        assert!(e.contains("over the maximum of 1048576"), "{e}");
    }
}
