//! Fields by path: where a value sits in the line (rendered only for an error), and the
//! readers of optional fields that name it when the type is wrong.

use serde_json::{Map, Value as Json};

use super::JsonError;
use crate::record::Text;

/// A field's position, kept on the stack and only rendered into a string for an error.
#[derive(Clone, Copy)]
pub(super) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
}

#[derive(Clone, Copy)]
pub(super) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    pub(super) fn root(key: &'a str) -> Self {
        Path {
            parent: None,
            seg: Seg::Key(key),
        }
    }

    pub(super) fn key<'b>(&'b self, key: &'b str) -> Path<'b> {
        Path {
            parent: Some(self),
            seg: Seg::Key(key),
        }
    }

    pub(super) fn index(&self, i: usize) -> Path<'_> {
        Path {
            parent: Some(self),
            seg: Seg::Index(i),
        }
    }

    pub(super) fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        if let Some(parent) = self.parent {
            parent.render_into(out);
        }
        match self.seg {
            Seg::Key(k) => {
                if self.parent.is_some() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
}

pub(super) fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

pub(super) fn unknown_field(path: &Path<'_>) -> JsonError {
    JsonError::UnknownField {
        field: path.render(),
    }
}

pub(super) fn wrong_type(path: &Path<'_>, expected: &'static str, found: &Json) -> JsonError {
    JsonError::WrongType {
        field: path.render(),
        expected,
        found: json_type(found),
    }
}

pub(super) fn opt_string(v: Json, path: &Path<'_>) -> Result<Option<String>, JsonError> {
    match v {
        Json::Null => Ok(None),
        Json::String(s) => Ok(Some(s)),
        other => Err(wrong_type(path, "a string", &other)),
    }
}

pub(super) fn opt_text(v: Json, path: &Path<'_>) -> Result<Text, JsonError> {
    Ok(opt_string(v, path)?.map_or(Text::Borrowed(""), Text::Owned))
}

pub(super) fn opt_object(v: Json, path: &Path<'_>) -> Result<Option<Map<String, Json>>, JsonError> {
    match v {
        Json::Null => Ok(None),
        Json::Object(m) => Ok(Some(m)),
        other => Err(wrong_type(path, "an object", &other)),
    }
}

pub(super) fn opt_array(v: Json, path: &Path<'_>) -> Result<Vec<Json>, JsonError> {
    match v {
        Json::Null => Ok(Vec::new()),
        Json::Array(a) => Ok(a),
        other => Err(wrong_type(path, "an array", &other)),
    }
}

pub(super) fn opt_ts(v: Json, path: &Path<'_>) -> Result<Option<i64>, JsonError> {
    match v {
        Json::Null => Ok(None),
        Json::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| JsonError::InvalidNumber {
                field: path.render(),
                value: n.to_string(),
                expected: "an integer number of seconds within i64",
            }),
        other => Err(wrong_type(path, "a number", &other)),
    }
}
