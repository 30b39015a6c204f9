//! Frames as the agent decodes them, and what is wrong with bytes that are not one.

use std::error::Error;
use std::fmt;

use rmpv::Value;

/// One frame the agent received and decoded: `[tag, [[ts, body]], options]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedFrame {
    /// The tag, for example `AsmAuditDP`.
    pub tag: String,
    /// The entry's time stamp (Unix time in seconds).
    pub ts: i64,
    /// The entry's record: always a [`Value::Map`] whose keys are strings.
    pub body: Value,
    /// The options map, for example `{"TimeFormat": "DateTime"}`: always a [`Value::Map`].
    pub options: Value,
    /// The frame's exact bytes as they came off the wire.
    pub raw: Vec<u8>,
    /// The connection it came on: the index of the accepted connection, from 0, counted
    /// over the agent's whole life (restarts included), so a reconnect shows as a new
    /// number.
    pub connection: u64,
    /// Where the frame starts in its connection's byte stream.
    pub offset: u64,
}

impl ReceivedFrame {
    /// The body's entries as `(key, value)` pairs, in wire order.
    pub fn body_entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        map_entries(&self.body)
    }

    /// The body's keys, in wire order.
    pub fn body_keys(&self) -> Vec<&str> {
        self.body_entries().map(|(key, _)| key).collect()
    }

    /// The body's value for `key`.
    pub fn body_get(&self, key: &str) -> Option<&Value> {
        map_get(&self.body, key)
    }

    /// The body's value for `key`, if it is a string.
    pub fn body_str(&self, key: &str) -> Option<&str> {
        self.body_get(key).and_then(Value::as_str)
    }

    /// The value for `key` in the body's `CustomData` map.
    pub fn custom(&self, key: &str) -> Option<&Value> {
        self.body_get("CustomData")
            .and_then(|custom| map_get(custom, key))
    }

    /// The options map's value for `key`, if it is a string.
    pub fn option_str(&self, key: &str) -> Option<&str> {
        map_get(&self.options, key).and_then(Value::as_str)
    }
}

fn map_entries(map: &Value) -> impl Iterator<Item = (&str, &Value)> {
    map.as_map()
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| Some((key.as_str()?, value)))
}

fn map_get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map_entries(map).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// What went wrong with a [`FrameError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameErrorKind {
    /// The bytes are not MessagePack (a reserved marker, nesting deeper than
    /// [`MAX_NESTING`](super::MAX_NESTING), or a decoder failure).
    Malformed,
    /// The frame is (or declares itself) longer than the agent's frame size limit.
    TooLarge,
    /// Valid MessagePack, but not a `[str, [[int, map]], map]` frame with UTF-8 strings.
    Shape,
    /// The peer closed the connection in the middle of a frame.
    Truncated,
    /// Reading from the connection failed, or the agent could not serve it.
    Io,
}

impl fmt::Display for FrameErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed MessagePack",
            Self::TooLarge => "frame too large",
            Self::Shape => "not a fluent frame",
            Self::Truncated => "truncated frame",
            Self::Io => "I/O error",
        })
    }
}

/// Something on a connection that was not a well-formed frame.
///
/// After an error the agent closes that connection: it cannot know where the next frame
/// would start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    /// The kind of problem.
    pub kind: FrameErrorKind,
    /// What exactly went wrong, for a person to read.
    pub detail: String,
    /// The connection it happened on (see [`ReceivedFrame::connection`]).
    pub connection: u64,
    /// Where the frame with the problem starts in the connection's byte stream.
    pub frame_offset: u64,
    /// Where the problem was found in the connection's byte stream (at or after
    /// `frame_offset`).
    pub offset: u64,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection {}, byte {} (frame at byte {}): {}: {}",
            self.connection, self.offset, self.frame_offset, self.kind, self.detail
        )
    }
}

impl Error for FrameError {}

/// Decodes `raw`, which the scanner found to be exactly one MessagePack value.
pub(super) fn decode_at(
    raw: &[u8],
    connection: u64,
    frame_offset: u64,
) -> Result<ReceivedFrame, FrameError> {
    let error = |kind, detail| FrameError {
        kind,
        detail,
        connection,
        frame_offset,
        offset: frame_offset,
    };
    let mut reader = raw;
    // The scanner already bounded the nesting, so no depth limit of rmpv's may interfere.
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, usize::MAX).map_err(|e| {
        error(
            FrameErrorKind::Malformed,
            format!("the MessagePack decoder refused the frame: {e}"),
        )
    })?;
    if !reader.is_empty() {
        return Err(error(
            FrameErrorKind::Malformed,
            format!(
                "the MessagePack decoder ended the value {} bytes before the frame's end",
                reader.len()
            ),
        ));
    }
    let (tag, ts, body, options) =
        check_shape(value).map_err(|detail| error(FrameErrorKind::Shape, detail))?;
    Ok(ReceivedFrame {
        tag,
        ts,
        body,
        options,
        raw: raw.to_vec(),
        connection,
        offset: frame_offset,
    })
}

/// Checks `[str, [[int, map]], map]`, string keys in the body, and UTF-8 everywhere.
fn check_shape(value: Value) -> Result<(String, i64, Value, Value), String> {
    check_utf8(&value, &mut String::from("frame"))?;
    let top = match value {
        Value::Array(items) if items.len() == 3 => items,
        other => {
            return Err(format!(
                "a frame must be an array of 3 (tag, entries, options), found {}",
                describe(&other)
            ));
        }
    };
    let Ok([tag, entries, options]) = <[Value; 3]>::try_from(top) else {
        return Err("a frame must be an array of 3".into());
    };
    let tag = check_tag(tag)?;
    let (ts, body) = check_entries(entries)?;
    let options = match options {
        Value::Map(entries) => Value::Map(entries),
        other => {
            return Err(format!(
                "the options must be a map, found {}",
                describe(&other)
            ));
        }
    };
    Ok((tag, ts, body, options))
}

fn check_tag(tag: Value) -> Result<String, String> {
    match tag {
        Value::String(s) => s
            .into_str()
            .ok_or_else(|| String::from("the tag is not valid UTF-8")),
        other => Err(format!(
            "the tag must be a string, found {}",
            describe(&other)
        )),
    }
}

/// `[[time, record]]`: exactly one entry.
fn check_entries(entries: Value) -> Result<(i64, Value), String> {
    let entry = match entries {
        Value::Array(items) if items.len() == 1 => items.into_iter().next(),
        other => {
            return Err(format!(
                "the entries must be an array of exactly 1 entry, found {}",
                describe(&other)
            ));
        }
    };
    let (ts, body) = match entry {
        Some(Value::Array(pair)) if pair.len() == 2 => {
            let mut pair = pair.into_iter();
            (pair.next(), pair.next())
        }
        Some(other) => {
            return Err(format!(
                "the entry must be an array of 2 (time, record), found {}",
                describe(&other)
            ));
        }
        None => return Err("the entries must hold 1 entry".into()),
    };
    Ok((check_ts(ts)?, check_body(body)?))
}

fn check_ts(ts: Option<Value>) -> Result<i64, String> {
    match ts {
        Some(Value::Integer(n)) => n
            .as_i64()
            .ok_or_else(|| format!("the time stamp {n} does not fit in an i64")),
        Some(other) => Err(format!(
            "the time stamp must be an integer, found {}",
            describe(&other)
        )),
        None => Err("the entry has no time stamp".into()),
    }
}

/// A map with string keys, each once.
fn check_body(body: Option<Value>) -> Result<Value, String> {
    match body {
        Some(Value::Map(entries)) => {
            let mut seen = std::collections::HashSet::new();
            for (key, _) in &entries {
                let key = key.as_str().ok_or_else(|| {
                    format!("the record's keys must be strings, found {}", describe(key))
                })?;
                if !seen.insert(key) {
                    return Err(format!("the record has the key {key:?} twice"));
                }
            }
            Ok(Value::Map(entries))
        }
        Some(other) => Err(format!(
            "the record must be a map, found {}",
            describe(&other)
        )),
        None => Err("the entry has no record".into()),
    }
}

/// Every string in the tree must be UTF-8; `path` says where we are, for the message.
fn check_utf8(value: &Value, path: &mut String) -> Result<(), String> {
    match value {
        Value::String(s) if s.as_str().is_none() => {
            Err(format!("a string at {path} is not valid UTF-8"))
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_utf8(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Map(entries) => {
            for (key, item) in entries {
                let len = path.len();
                match key.as_str() {
                    Some(key) => path.push_str(&format!(".{key}")),
                    None => path.push_str(".<key>"),
                }
                check_utf8(key, path)?;
                check_utf8(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Nil => "nil".into(),
        Value::Boolean(_) => "a boolean".into(),
        Value::Integer(_) => "an integer".into(),
        Value::F32(_) | Value::F64(_) => "a float".into(),
        Value::String(_) => "a string".into(),
        Value::Binary(_) => "binary".into(),
        Value::Array(items) => format!("an array of {}", items.len()),
        Value::Map(entries) => format!("a map of {}", entries.len()),
        Value::Ext(..) => "an extension value".into(),
    }
}
