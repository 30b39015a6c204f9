//! A local stand-in for the Geneva monitoring agent, for tests.
//!
//! [`TestAgent`] listens on a Unix domain socket or a TCP port, accepts any number of
//! connections and decodes the fluent frames written to them with [`rmpv`], a MessagePack
//! decoder that shares no code with this crate's encoder. Every decoded frame is appended
//! to one list in arrival order; anything that is not a well-formed frame becomes a
//! [`FrameError`] in a second list, so a test can assert that there were none.
//!
//! The agent can also misbehave on purpose, to test a client against a slow, stuck,
//! picky or dying agent: see [`TestAgent::stop_reading`], [`TestAgent::set_read_rate`],
//! [`TestAgent::set_drop_after`], [`TestAgent::set_refuse_connections`],
//! [`TestAgent::disconnect_all`], [`TestAgent::kill`] and [`TestAgent::restart`].
//!
//! The frame splitting is available on its own as [`FrameSplitter`] (bytes in, frames
//! out, no sockets) and [`decode_frame`] (one complete frame).
//!
//! Every connection is read on its own thread. Shutting the agent down (dropping it, or
//! [`TestAgent::kill`]) wakes those threads and the accept thread at once on Linux by
//! shutting their sockets down, and joins them all; on other systems they notice within
//! about 100 ms.
//!
//! # Wire format
//!
//! Frames are MessagePack arrays `[tag, [[ts, body]], options]` written back to back on
//! the stream: no length prefix, no delimiter, no response. The agent finds where a frame
//! ends by walking the MessagePack structure, then decodes exactly those bytes.
//!
//! # Example
//!
//! ```
//! use std::io::Write;
//! use std::time::Duration;
//! use geneva_audit::agent::TestAgent;
//! use rmpv::Value;
//!
//! let agent = TestAgent::tcp("127.0.0.1:0")?;
//!
//! // Any client will do; here a frame encoded by hand.
//! let frame = Value::Array(vec![
//!     Value::from("AsmAuditDP"),
//!     Value::Array(vec![Value::Array(vec![
//!         Value::from(1_700_000_000_i64),
//!         Value::Map(vec![(Value::from("OperationName"), Value::from("Login"))]),
//!     ])]),
//!     Value::Map(vec![(Value::from("TimeFormat"), Value::from("DateTime"))]),
//! ]);
//! let mut bytes = Vec::new();
//! rmpv::encode::write_value(&mut bytes, &frame)?;
//! std::net::TcpStream::connect(agent.local_addr().expect("a TCP agent"))?.write_all(&bytes)?;
//!
//! let frames = agent.wait_for_frames(1, Duration::from_secs(10))?;
//! assert_eq!(frames[0].tag, "AsmAuditDP");
//! assert_eq!(frames[0].ts, 1_700_000_000);
//! assert_eq!(frames[0].body_str("OperationName"), Some("Login"));
//! assert!(agent.errors().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::error::Error;
use std::fmt;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
/// The MessagePack library the agent decodes with: [`ReceivedFrame`] holds its values.
pub use rmpv;
use rmpv::Value;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The largest frame the agent accepts unless told otherwise: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// How deeply arrays and maps may nest in one frame, the frame itself included (the
/// envelope uses 5 levels down to the record's values, leaving 123 for custom data).
/// Deeper frames are malformed: this bounds the recursive decoder's stack use, so a
/// hostile stream cannot overflow a thread's stack.
pub const MAX_NESTING: usize = 128;

/// How long a blocked `accept` or `read` waits before it looks at the agent's flags again.
/// Shutting the agent down wakes them at once on Linux; this is the fallback.
const POLL: Duration = Duration::from_millis(100);

/// How much one `read` on a connection asks for.
const READ_CHUNK: usize = 64 * 1024;

const LISTEN_BACKLOG: i32 = 128;

/// Stack size of the connection reader threads: decoding recurses once per nesting level,
/// and [`MAX_NESTING`] levels need well under this even in a debug build.
const READER_STACK: usize = 2 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Frames and errors
// ---------------------------------------------------------------------------------------

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
    /// [`MAX_NESTING`], or a decoder failure).
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

// ---------------------------------------------------------------------------------------
// Frame splitting
// ---------------------------------------------------------------------------------------

/// Splits a connection's byte stream into frames.
///
/// Feed it bytes in pieces of any size with [`push`](Self::push); it returns every frame
/// completed so far, in order. It never panics and never holds more than the frame size
/// limit plus the last piece pushed, whatever the input.
///
/// It walks the MessagePack structure as bytes arrive (so a frame split into a thousand
/// pieces costs no more than one in a single piece, and a frame that declares itself
/// longer than the limit is refused as soon as its header is in), then decodes each
/// complete frame with [`rmpv`] and checks its shape.
///
/// The first error ends the stream: the splitter reports it and then ignores everything
/// pushed after it, as the agent closes such a connection.
///
/// ```
/// use geneva_audit::agent::{FrameSplitter, DEFAULT_MAX_FRAME_LEN};
///
/// // [ "T", [[7, {"k": "v"}]], {} ], by hand.
/// let frame = b"\x93\xa1T\x91\x92\xd3\0\0\0\0\0\0\0\x07\x81\xa1k\xa1v\x80";
/// let mut splitter = FrameSplitter::new(DEFAULT_MAX_FRAME_LEN);
/// assert!(splitter.push(&frame[..5]).is_empty());
/// let out = splitter.push(&frame[5..]);
/// let frame = out[0].as_ref().expect("a valid frame");
/// assert_eq!((frame.tag.as_str(), frame.ts), ("T", 7));
/// assert_eq!(frame.body_str("k"), Some("v"));
/// ```
#[derive(Debug)]
pub struct FrameSplitter {
    connection: u64,
    max_frame_len: usize,
    /// Bytes of the frame in progress (and of any frames after it, while pushing).
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: u64,
    scan: Scanner,
    failed: bool,
}

impl FrameSplitter {
    /// A splitter for connection 0 that refuses frames longer than `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        Self::for_connection(0, max_frame_len)
    }

    /// A splitter whose frames and errors carry the given connection number.
    pub fn for_connection(connection: u64, max_frame_len: usize) -> Self {
        Self {
            connection,
            max_frame_len,
            buf: Vec::new(),
            base: 0,
            scan: Scanner::new(),
            failed: false,
        }
    }

    /// Adds bytes from the stream; returns the frames (and at most one error) that they
    /// complete, in stream order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<ReceivedFrame, FrameError>> {
        let mut out = Vec::new();
        if self.failed || bytes.is_empty() {
            return out;
        }
        self.buf.extend_from_slice(bytes);
        let mut start = 0usize;
        loop {
            let rest = self.buf.get(start..).unwrap_or_default();
            let frame_offset = self.base.saturating_add(as_u64(start));
            match self.scan.advance(rest, self.max_frame_len) {
                Scan::Incomplete => break,
                Scan::Complete(len) => {
                    self.scan = Scanner::new();
                    let Some(raw) = rest.get(..len) else {
                        // Unreachable: the scanner only completes within `rest`.
                        out.push(Err(self.error(
                            FrameErrorKind::Malformed,
                            "internal error: frame end beyond the data".into(),
                            frame_offset,
                            frame_offset,
                        )));
                        break;
                    };
                    let result = decode_at(raw, self.connection, frame_offset);
                    start = start.saturating_add(len);
                    let failed = result.is_err();
                    out.push(result);
                    if failed {
                        break;
                    }
                }
                Scan::Error { at, kind, detail } => {
                    let offset = frame_offset.saturating_add(as_u64(at));
                    out.push(Err(self.error(kind, detail, frame_offset, offset)));
                    break;
                }
            }
        }
        if matches!(out.last(), Some(Err(_))) {
            self.fail();
        } else {
            self.buf.drain(..start.min(self.buf.len()));
            self.base = self.base.saturating_add(as_u64(start));
        }
        out
    }

    /// Ends the stream: reports a [`FrameErrorKind::Truncated`] error if a frame was
    /// begun and not finished. The splitter is failed afterwards.
    pub fn finish(&mut self) -> Option<FrameError> {
        let error = (!self.failed && !self.buf.is_empty()).then(|| {
            self.error(
                FrameErrorKind::Truncated,
                format!(
                    "the stream ended {} bytes into a frame that was not complete",
                    self.buf.len()
                ),
                self.base,
                self.base.saturating_add(as_u64(self.buf.len())),
            )
        });
        self.fail();
        error
    }

    /// How many bytes of an unfinished frame the splitter holds.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Whether an error (or [`finish`](Self::finish)) ended the stream.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    fn fail(&mut self) {
        self.failed = true;
        self.buf = Vec::new();
        self.scan = Scanner::new();
    }

    fn error(
        &self,
        kind: FrameErrorKind,
        detail: String,
        frame_offset: u64,
        offset: u64,
    ) -> FrameError {
        FrameError {
            kind,
            detail,
            connection: self.connection,
            frame_offset,
            offset,
        }
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Decodes one complete frame, `bytes` holding exactly that frame and nothing after it.
///
/// Useful to check an encoder's output without a socket. Errors carry connection 0 and
/// offsets from the start of `bytes`.
///
/// ```
/// use geneva_audit::agent::{decode_frame, FrameErrorKind};
///
/// let frame = decode_frame(b"\x93\xa1T\x91\x92\x05\x80\x80")?;
/// assert_eq!((frame.tag.as_str(), frame.ts), ("T", 5));
///
/// let error = decode_frame(b"\x92\xa1T\x90").unwrap_err();
/// assert_eq!(error.kind, FrameErrorKind::Shape);
/// # Ok::<(), geneva_audit::agent::FrameError>(())
/// ```
pub fn decode_frame(bytes: &[u8]) -> Result<ReceivedFrame, FrameError> {
    let mut splitter = FrameSplitter::new(usize::MAX);
    let mut out = splitter.push(bytes);
    let tail = splitter.finish();
    match (out.len(), tail) {
        (_, Some(error)) => Err(error),
        (1, None) => out.pop().unwrap_or_else(|| Err(empty_error())),
        (0, None) => Err(empty_error()),
        (_, None) => match out.into_iter().nth(1) {
            Some(Ok(second)) => Err(FrameError {
                kind: FrameErrorKind::Shape,
                detail: "more bytes after the end of the frame".into(),
                connection: 0,
                frame_offset: 0,
                offset: second.offset,
            }),
            Some(Err(error)) => Err(error),
            None => Err(empty_error()),
        },
    }
}

fn empty_error() -> FrameError {
    FrameError {
        kind: FrameErrorKind::Truncated,
        detail: "no bytes".into(),
        connection: 0,
        frame_offset: 0,
        offset: 0,
    }
}

/// Decodes `raw`, which the scanner found to be exactly one MessagePack value.
fn decode_at(raw: &[u8], connection: u64, frame_offset: u64) -> Result<ReceivedFrame, FrameError> {
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
    let tag = match tag {
        Value::String(s) => s
            .into_str()
            .ok_or_else(|| String::from("the tag is not valid UTF-8"))?,
        other => {
            return Err(format!(
                "the tag must be a string, found {}",
                describe(&other)
            ));
        }
    };
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
    let ts = match ts {
        Some(Value::Integer(n)) => n
            .as_i64()
            .ok_or_else(|| format!("the time stamp {n} does not fit in an i64"))?,
        Some(other) => {
            return Err(format!(
                "the time stamp must be an integer, found {}",
                describe(&other)
            ));
        }
        None => return Err("the entry has no time stamp".into()),
    };
    let body = match body {
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
            Value::Map(entries)
        }
        Some(other) => {
            return Err(format!(
                "the record must be a map, found {}",
                describe(&other)
            ));
        }
        None => return Err("the entry has no record".into()),
    };
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

/// What the structure walk found.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// A whole value: this many bytes.
    Complete(usize),
    /// More bytes needed.
    Incomplete,
    /// Not a frame; `at` is relative to the frame's start.
    Error {
        at: usize,
        kind: FrameErrorKind,
        detail: String,
    },
}

/// Walks MessagePack headers to find where one value ends, resumably: it remembers how far
/// it got, so each byte is looked at once however the stream is cut into pieces.
#[derive(Debug)]
struct Scanner {
    /// Bytes of the frame walked so far.
    pos: usize,
    /// Items still to come in each open container, outermost first; the bottom entry is
    /// the frame itself.
    open: Vec<u64>,
    /// The sum of `open`: a lower bound of the bytes still to come.
    pending: u64,
}

/// One MessagePack item's header.
struct Item {
    /// Marker and length/type bytes.
    header: u64,
    /// Bytes of data after the header (strings, binary, extensions, numbers).
    payload: u64,
    /// Items inside it (map entries count twice).
    children: u64,
}

impl Scanner {
    fn new() -> Self {
        Self {
            pos: 0,
            open: vec![1],
            pending: 1,
        }
    }

    /// More bytes are needed; but everything in `buf` belongs to this unfinished frame,
    /// so it must already fit the limit.
    fn incomplete(&self, buf: &[u8], max_len: u64) -> Scan {
        let len = as_u64(buf.len());
        if len > max_len {
            return Scan::Error {
                at: 0,
                kind: FrameErrorKind::TooLarge,
                detail: format!(
                    "{len} bytes of an unfinished frame, more than the limit of {max_len}"
                ),
            };
        }
        Scan::Incomplete
    }

    fn advance(&mut self, buf: &[u8], max_len: usize) -> Scan {
        let max_len = as_u64(max_len);
        loop {
            while self.open.last() == Some(&0) {
                self.open.pop();
            }
            if self.open.is_empty() {
                return Scan::Complete(self.pos);
            }
            let Some(&marker) = buf.get(self.pos) else {
                return self.incomplete(buf, max_len);
            };
            let error = |kind, detail| Scan::Error {
                at: self.pos,
                kind,
                detail,
            };
            if self.pos == 0 && !matches!(marker, 0x90..=0x9f | 0xdc | 0xdd) {
                return error(
                    FrameErrorKind::Shape,
                    format!("a frame must be an array, but it starts with marker {marker:#04x}"),
                );
            }
            let rest = buf.get(self.pos.saturating_add(1)..).unwrap_or_default();
            let item = match item(marker, rest) {
                Ok(Some(item)) => item,
                Ok(None) => return self.incomplete(buf, max_len),
                Err(detail) => return error(FrameErrorKind::Malformed, detail),
            };
            let end = as_u64(self.pos)
                .saturating_add(item.header)
                .saturating_add(item.payload);
            // Every item still to come takes at least one byte.
            let pending = self.pending.saturating_sub(1).saturating_add(item.children);
            let least = end.saturating_add(pending);
            if least > max_len {
                return error(
                    FrameErrorKind::TooLarge,
                    format!(
                        "the frame needs at least {least} bytes, more than the limit of {max_len}"
                    ),
                );
            }
            if end > as_u64(buf.len()) {
                return self.incomplete(buf, max_len);
            }
            if item.children > 0 && self.open.len() >= MAX_NESTING {
                return error(
                    FrameErrorKind::Malformed,
                    format!("arrays and maps nest deeper than {MAX_NESTING} levels"),
                );
            }
            // `end` is within `buf`, so it fits in usize.
            self.pos = usize::try_from(end).unwrap_or(usize::MAX);
            if let Some(top) = self.open.last_mut() {
                *top = top.saturating_sub(1);
            }
            self.pending = pending;
            if item.children > 0 {
                self.open.push(item.children);
            }
        }
    }
}

/// The header of the item that starts with `marker`; `rest` holds the bytes after the
/// marker that have arrived. `Ok(None)` when the length bytes have not all arrived.
fn item(marker: u8, rest: &[u8]) -> Result<Option<Item>, String> {
    let fixed = |len: u64| {
        Ok(Some(Item {
            header: len,
            payload: 0,
            children: 0,
        }))
    };
    // Big-endian length in `rest[..n]`.
    let length = |n: usize| {
        rest.get(..n)
            .map(|bytes| bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    };
    let data = |header: u64, len: Option<u64>| {
        Ok(len.map(|payload| Item {
            header,
            payload,
            children: 0,
        }))
    };
    let container = |header: u64, children: Option<u64>| {
        Ok(children.map(|children| Item {
            header,
            payload: 0,
            children,
        }))
    };
    let low = u64::from(marker);
    match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => fixed(1),
        0x80..=0x8f => container(1, Some(2 * (low & 0x0f))),
        0x90..=0x9f => container(1, Some(low & 0x0f)),
        0xa0..=0xbf => data(1, Some(low & 0x1f)),
        0xc1 => Err("marker 0xc1 is reserved and never used in MessagePack".into()),
        // bin 8/16/32
        0xc4 => data(2, length(1)),
        0xc5 => data(3, length(2)),
        0xc6 => data(5, length(4)),
        // ext 8/16/32: marker, length, type
        0xc7 => data(3, length(1)),
        0xc8 => data(4, length(2)),
        0xc9 => data(6, length(4)),
        // float 32/64, uint 8..64, int 8..64
        0xca => fixed(5),
        0xcb => fixed(9),
        0xcc | 0xd0 => fixed(2),
        0xcd | 0xd1 => fixed(3),
        0xce | 0xd2 => fixed(5),
        0xcf | 0xd3 => fixed(9),
        // fixext 1/2/4/8/16: marker, type, data
        0xd4 => fixed(3),
        0xd5 => fixed(4),
        0xd6 => fixed(6),
        0xd7 => fixed(10),
        0xd8 => fixed(18),
        // str 8/16/32
        0xd9 => data(2, length(1)),
        0xda => data(3, length(2)),
        0xdb => data(5, length(4)),
        // array 16/32
        0xdc => container(3, length(2)),
        0xdd => container(5, length(4)),
        // map 16/32
        0xde => container(3, length(2).map(|n| 2 * n)),
        0xdf => container(5, length(4).map(|n| 2 * n)),
    }
}

// ---------------------------------------------------------------------------------------
// The agent
// ---------------------------------------------------------------------------------------

/// Where a [`TestAgent`] listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix domain socket at this path.
    Unix(PathBuf),
    /// A TCP address (with the port actually bound, never port 0).
    Tcp(SocketAddr),
}

/// Counts that describe the agent at one moment, handed to [`TestAgent::wait_for`]
/// conditions and kept in a [`Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// Frames in the list now ([`TestAgent::take_frames`] empties it).
    pub frames: usize,
    /// Frames received over the agent's whole life.
    pub total_frames: u64,
    /// Errors in the list now.
    pub errors: usize,
    /// Connections accepted over the agent's whole life (refused ones not included).
    pub connections: u64,
    /// Connections open now.
    pub open_connections: usize,
    /// Connections accepted and closed at once because of
    /// [`TestAgent::set_refuse_connections`].
    pub refused: u64,
    /// Whether the agent is listening (not killed).
    pub running: bool,
}

/// A wait on the agent that ran out of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeout {
    /// What the wait was for, for example `"3 frames"`.
    pub wanted: String,
    /// How long it waited.
    pub waited: Duration,
    /// The agent's counts when it gave up.
    pub status: Status,
    /// The agent's errors when it gave up (often the reason frames never came).
    pub errors: Vec<FrameError>,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.status;
        write!(
            f,
            "timed out after {:?} waiting for {}: the agent has {} frames ({} in all), {} \
             errors, {} connections ({} open), {} refused, {}",
            self.waited,
            self.wanted,
            s.frames,
            s.total_frames,
            s.errors,
            s.connections,
            s.open_connections,
            s.refused,
            if s.running { "running" } else { "killed" },
        )?;
        for error in self.errors.iter().take(3) {
            write!(f, "; {error}")?;
        }
        Ok(())
    }
}

impl Error for Timeout {}

/// Builds a [`TestAgent`] with settings other than the defaults.
///
/// ```
/// use geneva_audit::agent::TestAgent;
///
/// let agent = TestAgent::builder().max_frame_len(1024).tcp("127.0.0.1:0")?;
/// assert!(agent.is_running());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct TestAgentBuilder {
    max_frame_len: usize,
}

impl Default for TestAgentBuilder {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

impl TestAgentBuilder {
    /// Frames longer than this many bytes are errors ([`FrameErrorKind::TooLarge`]);
    /// default [`DEFAULT_MAX_FRAME_LEN`].
    pub fn max_frame_len(mut self, bytes: usize) -> Self {
        self.max_frame_len = bytes;
        self
    }

    /// Starts an agent on a Unix domain socket; see [`TestAgent::unix`].
    pub fn unix(self, path: impl AsRef<Path>) -> io::Result<TestAgent> {
        TestAgent::start(Endpoint::Unix(path.as_ref().to_path_buf()), self)
    }

    /// Starts an agent on TCP; see [`TestAgent::tcp`].
    pub fn tcp(self, addr: impl ToSocketAddrs) -> io::Result<TestAgent> {
        let mut last = None;
        for addr in addr.to_socket_addrs()? {
            match bind_tcp(addr) {
                Ok(listener) => {
                    let local = listener
                        .local_addr()?
                        .as_socket()
                        .ok_or_else(|| io::Error::other("TCP listener without an IP address"))?;
                    return TestAgent::start_with(Endpoint::Tcp(local), self, listener);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")
        }))
    }
}

/// A stand-in for the Geneva agent: listens, decodes every frame written to it, and can
/// be told to misbehave. See the [module documentation](self).
///
/// All methods take `&self`, so one agent can be shared between threads (for example in
/// an `Arc`). Dropping it closes the listener and every connection, joins all its threads
/// and removes its socket file.
pub struct TestAgent {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    /// The running listener; `None` after [`kill`](Self::kill).
    listener: Mutex<Option<Listener>>,
}

impl fmt::Debug for TestAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestAgent")
            .field("endpoint", &self.endpoint)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Notified whenever anything in `state` changes.
    changed: Condvar,
    max_frame_len: usize,
}

#[derive(Default)]
struct State {
    frames: Vec<ReceivedFrame>,
    errors: Vec<FrameError>,
    total_frames: u64,
    /// Every accepted connection, indexed by its number.
    connections: Vec<Connection>,
    refused: u64,
    running: bool,
    paused: bool,
    read_rate: Option<u64>,
    drop_after: Option<u64>,
    refuse: bool,
}

struct Connection {
    open: bool,
    /// Closed by [`TestAgent::kill`]: what its reader already took from the kernel still
    /// counts as received (a crash loses only what was left in the socket's buffers).
    killed: bool,
    frames: u64,
    /// Shared with the reader thread; taken when the agent closes the connection.
    socket: Option<Arc<Socket>>,
    /// The reader thread, joined by `kill` (or reaped once finished).
    thread: Option<JoinHandle<()>>,
}

impl State {
    fn status(&self) -> Status {
        Status {
            frames: self.frames.len(),
            total_frames: self.total_frames,
            errors: self.errors.len(),
            connections: as_u64(self.connections.len()),
            open_connections: self.connections.iter().filter(|c| c.open).count(),
            refused: self.refused,
            running: self.running,
        }
    }

    fn connection(&mut self, id: u64) -> Option<&mut Connection> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.connections.get_mut(i))
    }

    fn is_open(&self, id: u64) -> bool {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.connections.get(i))
            .is_some_and(|c| c.open)
    }

    fn reading_paused(&self) -> bool {
        self.paused || self.read_rate == Some(0)
    }
}

/// How the agent closes a connection.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Close {
    /// Like a process that dies: no FIN, unread data discarded (TCP sends a reset).
    Abrupt,
    /// An ordinary close.
    Orderly,
}

impl Connection {
    /// Marks it closed and wakes its reader; the socket closes once the reader lets go.
    fn close(&mut self, how: Close) {
        self.open = false;
        self.killed = how == Close::Abrupt;
        if let Some(socket) = self.socket.take() {
            if how == Close::Abrupt {
                // Linger 0: close() resets the connection instead of an orderly FIN.
                let _ = socket.set_linger(Some(Duration::ZERO));
                let _ = socket.shutdown(Shutdown::Read);
            } else {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }
}

struct Listener {
    socket: Arc<Socket>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Device and inode of the socket file this listener created, to remove only that.
    file: Option<(u64, u64)>,
}

impl TestAgent {
    /// Starts an agent listening on a Unix domain socket at `path`, with default settings.
    ///
    /// A stale socket file at `path` (one nobody listens on) is removed first; a live one
    /// is an [`io::ErrorKind::AddrInUse`] error, and anything that is not a socket an
    /// [`io::ErrorKind::AlreadyExists`] error. The socket file is made readable and
    /// writable by its owner only (0600) before the agent starts listening.
    ///
    /// ```
    /// use geneva_audit::agent::TestAgent;
    ///
    /// let path = std::env::temp_dir().join(format!("agent-doc-{}.sock", std::process::id()));
    /// let agent = TestAgent::unix(&path)?;
    /// assert!(path.exists());
    /// drop(agent);
    /// assert!(!path.exists());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn unix(path: impl AsRef<Path>) -> io::Result<TestAgent> {
        Self::builder().unix(path)
    }

    /// Starts an agent listening on TCP, with default settings; `"127.0.0.1:0"` picks a
    /// free port, which [`local_addr`](Self::local_addr) tells.
    pub fn tcp(addr: impl ToSocketAddrs) -> io::Result<TestAgent> {
        Self::builder().tcp(addr)
    }

    /// A builder, for settings other than the defaults.
    pub fn builder() -> TestAgentBuilder {
        TestAgentBuilder::default()
    }

    fn start(endpoint: Endpoint, config: TestAgentBuilder) -> io::Result<TestAgent> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            max_frame_len: config.max_frame_len,
        });
        let agent = TestAgent {
            shared,
            endpoint,
            listener: Mutex::new(None),
        };
        agent.restart()?;
        Ok(agent)
    }

    fn start_with(
        endpoint: Endpoint,
        config: TestAgentBuilder,
        socket: Socket,
    ) -> io::Result<TestAgent> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            max_frame_len: config.max_frame_len,
        });
        let listener = spawn_listener(&shared, socket, None)?;
        shared.state.lock().running = true;
        Ok(TestAgent {
            shared,
            endpoint,
            listener: Mutex::new(Some(listener)),
        })
    }

    /// Where the agent listens.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The socket file's path, for a Unix domain socket agent.
    pub fn path(&self) -> Option<&Path> {
        match &self.endpoint {
            Endpoint::Unix(path) => Some(path),
            Endpoint::Tcp(_) => None,
        }
    }

    /// The bound address, for a TCP agent.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self.endpoint {
            Endpoint::Unix(_) => None,
            Endpoint::Tcp(addr) => Some(addr),
        }
    }

    /// The largest frame the agent accepts, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.shared.max_frame_len
    }

    // --- What was received -------------------------------------------------------------

    /// A copy of the frames received so far, in arrival order.
    pub fn frames(&self) -> Vec<ReceivedFrame> {
        self.shared.state.lock().frames.clone()
    }

    /// Takes the frames received so far out of the list, leaving it empty.
    pub fn take_frames(&self) -> Vec<ReceivedFrame> {
        let frames = std::mem::take(&mut self.shared.state.lock().frames);
        self.shared.changed.notify_all();
        frames
    }

    /// A copy of the errors so far: bytes that were not well-formed frames.
    pub fn errors(&self) -> Vec<FrameError> {
        self.shared.state.lock().errors.clone()
    }

    /// Takes the errors so far out of the list, leaving it empty.
    pub fn take_errors(&self) -> Vec<FrameError> {
        let errors = std::mem::take(&mut self.shared.state.lock().errors);
        self.shared.changed.notify_all();
        errors
    }

    /// The agent's counts now.
    pub fn status(&self) -> Status {
        self.shared.state.lock().status()
    }

    /// How many connections the agent has accepted over its whole life.
    pub fn connection_count(&self) -> u64 {
        self.status().connections
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        self.status().open_connections
    }

    /// Whether the agent is listening (it was not killed, or was restarted since).
    pub fn is_running(&self) -> bool {
        self.shared.state.lock().running
    }

    // --- Waiting -----------------------------------------------------------------------

    /// Waits until `condition` holds for the agent's [`Status`], or `timeout` passes.
    ///
    /// It wakes whenever the agent's state changes; it does not poll.
    ///
    /// ```
    /// # use geneva_audit::agent::TestAgent;
    /// # use std::time::Duration;
    /// let agent = TestAgent::tcp("127.0.0.1:0")?;
    /// let _client = std::net::TcpStream::connect(agent.local_addr().expect("TCP"))?;
    /// agent.wait_for("an open connection", Duration::from_secs(10), |s| s.open_connections == 1)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn wait_for(
        &self,
        wanted: &str,
        timeout: Duration,
        condition: impl FnMut(&Status) -> bool,
    ) -> Result<Status, Timeout> {
        self.wait_with(wanted, timeout, condition, |state| state.status())
    }

    fn wait_with<T>(
        &self,
        wanted: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Status) -> bool,
        result: impl FnOnce(&State) -> T,
    ) -> Result<T, Timeout> {
        let started = Instant::now();
        let deadline = started.checked_add(timeout);
        let mut state = self.shared.state.lock();
        loop {
            let status = state.status();
            if condition(&status) {
                return Ok(result(&state));
            }
            let timed_out = match deadline {
                Some(deadline) => {
                    Instant::now() >= deadline
                        || self
                            .shared
                            .changed
                            .wait_until(&mut state, deadline)
                            .timed_out()
                }
                // A timeout too long to represent: wait without one.
                None => {
                    self.shared.changed.wait(&mut state);
                    false
                }
            };
            if timed_out {
                let status = state.status();
                if condition(&status) {
                    return Ok(result(&state));
                }
                return Err(Timeout {
                    wanted: wanted.to_owned(),
                    waited: started.elapsed(),
                    status,
                    errors: state.errors.clone(),
                });
            }
        }
    }

    /// Waits until at least `n` frames are in the list, then returns a copy of all of them.
    pub fn wait_for_frames(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedFrame>, Timeout> {
        self.wait_with(
            &format!("{n} frames"),
            timeout,
            |s| s.frames >= n,
            |state| state.frames.clone(),
        )
    }

    /// Waits until at least `n` errors are in the list, then returns a copy of all of them.
    pub fn wait_for_errors(&self, n: usize, timeout: Duration) -> Result<Vec<FrameError>, Timeout> {
        self.wait_with(
            &format!("{n} errors"),
            timeout,
            |s| s.errors >= n,
            |state| state.errors.clone(),
        )
    }

    /// Waits until the agent has accepted at least `n` connections over its life.
    pub fn wait_for_connections(&self, n: u64, timeout: Duration) -> Result<Status, Timeout> {
        self.wait_for(&format!("{n} connections"), timeout, |s| s.connections >= n)
    }

    // --- Faults ------------------------------------------------------------------------

    /// Stops reading from every connection, present and future, until
    /// [`resume_reading`](Self::resume_reading). Connections stay open, so a client's
    /// writes fill the socket buffers and then block (or fail with `WouldBlock`).
    ///
    /// Once this returns, the frame list does not grow until reading resumes: bytes a
    /// reader was already receiving are held back, not lost.
    pub fn stop_reading(&self) {
        self.shared.state.lock().paused = true;
        self.shared.changed.notify_all();
    }

    /// Undoes [`stop_reading`](Self::stop_reading).
    pub fn resume_reading(&self) {
        self.shared.state.lock().paused = false;
        self.shared.changed.notify_all();
    }

    /// Caps how fast each connection is read, in bytes per second (`None`: as fast as
    /// possible; `Some(0)`: not at all, like [`stop_reading`](Self::stop_reading)).
    /// Reads are spread out in pieces of about a twentieth of the rate.
    pub fn set_read_rate(&self, bytes_per_second: Option<u64>) {
        self.shared.state.lock().read_rate = bytes_per_second;
        self.shared.changed.notify_all();
    }

    /// Closes each connection once it has delivered `frames` frames (`None`: never).
    /// Whatever the client wrote after that frame is discarded. Connections that already
    /// delivered that many are closed now.
    pub fn set_drop_after(&self, frames: Option<u64>) {
        let mut state = self.shared.state.lock();
        state.drop_after = frames;
        if let Some(limit) = frames {
            for connection in &mut state.connections {
                if connection.open && connection.frames >= limit {
                    connection.close(Close::Orderly);
                }
            }
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    /// While `true`, every new connection is accepted and closed at once, unread (it
    /// counts in [`Status::refused`], not as a connection).
    pub fn set_refuse_connections(&self, refuse: bool) {
        self.shared.state.lock().refuse = refuse;
        self.shared.changed.notify_all();
    }

    /// Closes every open connection (an orderly close) but keeps listening, like an agent
    /// that drops its clients. Unread data on them is discarded.
    pub fn disconnect_all(&self) {
        let mut state = self.shared.state.lock();
        for connection in &mut state.connections {
            if connection.open {
                connection.close(Close::Orderly);
            }
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Dies abruptly: closes the listener and resets every connection without reading
    /// what is still in their socket buffers, and removes the socket file. Frames and
    /// errors received so far are kept; nothing more arrives until
    /// [`restart`](Self::restart). Does nothing if the agent is already dead.
    ///
    /// When it returns, all the agent's threads have ended and its sockets are closed.
    pub fn kill(&self) {
        self.kill_locked(&mut self.listener.lock());
    }

    fn kill_locked(&self, listener: &mut Option<Listener>) {
        if let Some(running) = listener.take() {
            running.stop.store(true, Ordering::SeqCst);
            // Wakes a blocked accept() at once on Linux; the accept timeout otherwise.
            let _ = running.socket.shutdown(Shutdown::Both);
            if let Some(thread) = running.thread {
                let _ = thread.join();
            }
            if let (Endpoint::Unix(path), Some(file)) = (&self.endpoint, running.file) {
                remove_if_same(path, file);
            }
        }
        let threads: Vec<JoinHandle<()>> = {
            let mut state = self.shared.state.lock();
            state.running = false;
            state
                .connections
                .iter_mut()
                .filter_map(|connection| {
                    if connection.open {
                        connection.close(Close::Abrupt);
                    }
                    connection.thread.take()
                })
                .collect()
        };
        self.shared.changed.notify_all();
        for thread in threads {
            let _ = thread.join();
        }
    }

    /// Listens again on the same path or port, after [`kill`](Self::kill) (a running agent
    /// is killed first). Frames, errors, settings and connection numbering carry on.
    pub fn restart(&self) -> io::Result<()> {
        let mut listener = self.listener.lock();
        self.kill_locked(&mut listener);
        let running = match &self.endpoint {
            Endpoint::Unix(path) => {
                let (socket, file) = bind_unix(path)?;
                spawn_listener(&self.shared, socket, Some(file)).inspect_err(|_| {
                    remove_if_same(path, file);
                })?
            }
            Endpoint::Tcp(addr) => spawn_listener(&self.shared, bind_tcp(*addr)?, None)?,
        };
        *listener = Some(running);
        self.shared.state.lock().running = true;
        self.shared.changed.notify_all();
        Ok(())
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.kill();
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // So a restart can bind the port again while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket)
}

/// Binds and listens at `path`; returns the socket file's identity too.
fn bind_unix(path: &Path) -> io::Result<(Socket, (u64, u64))> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("something is listening on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    let file = std::fs::symlink_metadata(path).map(|meta| (meta.dev(), meta.ino()));
    let file = match file {
        Ok(file) => file,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    // Owner only, before listen(): nobody can connect while the mode is still wider.
    let listening = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| socket.listen(LISTEN_BACKLOG));
    if let Err(e) = listening {
        remove_if_same(path, file);
        return Err(e);
    }
    Ok((socket, file))
}

/// Removes the socket file at `path` if it is still the one we created.
fn remove_if_same(path: &Path, file: (u64, u64)) {
    let same = std::fs::symlink_metadata(path).is_ok_and(|meta| (meta.dev(), meta.ino()) == file);
    if same {
        let _ = std::fs::remove_file(path);
    }
}

fn spawn_listener(
    shared: &Arc<Shared>,
    socket: Socket,
    file: Option<(u64, u64)>,
) -> io::Result<Listener> {
    // accept() gives up after this on Linux, so the thread can look at `stop`.
    socket.set_read_timeout(Some(POLL))?;
    let socket = Arc::new(socket);
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let shared = Arc::clone(shared);
        let socket = Arc::clone(&socket);
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("test-agent-accept".into())
            .spawn(move || accept_loop(&shared, &socket, &stop))?
    };
    Ok(Listener {
        socket,
        stop,
        thread: Some(thread),
        file,
    })
}

fn accept_loop(shared: &Arc<Shared>, listener: &Socket, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let socket = match listener.accept() {
            Ok((socket, _)) => socket,
            Err(e) => {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                ) && !stop.load(Ordering::SeqCst)
                {
                    // A lasting error (out of file descriptors, say): don't spin on it.
                    let mut state = shared.state.lock();
                    let _ = shared.changed.wait_for(&mut state, POLL);
                }
                continue;
            }
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let mut state = shared.state.lock();
        if state.refuse {
            state.refused = state.refused.saturating_add(1);
            drop(state);
            shared.changed.notify_all();
            drop(socket);
            continue;
        }
        // Reap the threads of connections that have ended.
        for connection in &mut state.connections {
            if connection
                .thread
                .as_ref()
                .is_some_and(JoinHandle::is_finished)
            {
                if let Some(thread) = connection.thread.take() {
                    let _ = thread.join();
                }
            }
        }
        let id = as_u64(state.connections.len());
        let socket = Arc::new(socket);
        let spawned = socket.set_read_timeout(Some(POLL)).and_then(|()| {
            let shared = Arc::clone(shared);
            let socket = Arc::clone(&socket);
            std::thread::Builder::new()
                .name(format!("test-agent-conn-{id}"))
                .stack_size(READER_STACK)
                .spawn(move || read_loop(&shared, id, &socket))
        });
        match spawned {
            Ok(thread) => state.connections.push(Connection {
                open: true,
                killed: false,
                frames: 0,
                socket: Some(socket),
                thread: Some(thread),
            }),
            Err(e) => {
                state.connections.push(Connection {
                    open: false,
                    killed: false,
                    frames: 0,
                    socket: None,
                    thread: None,
                });
                state.errors.push(FrameError {
                    kind: FrameErrorKind::Io,
                    detail: format!("could not serve the connection: {e}"),
                    connection: id,
                    frame_offset: 0,
                    offset: 0,
                });
            }
        }
        drop(state);
        shared.changed.notify_all();
    }
}

/// Reads one connection until it closes or the agent closes it.
fn read_loop(shared: &Shared, id: u64, socket: &Socket) {
    let mut splitter = FrameSplitter::for_connection(id, shared.max_frame_len);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut next_read: Option<Instant> = None;
    let mut received = 0u64;
    loop {
        // Wait while reading is stopped or the rate cap says not yet.
        let len = {
            let mut state = shared.state.lock();
            loop {
                if !state.is_open(id) {
                    return;
                }
                if state.reading_paused() {
                    shared.changed.wait(&mut state);
                    continue;
                }
                match (state.read_rate, next_read) {
                    (Some(_), Some(at)) if Instant::now() < at => {
                        let _ = shared.changed.wait_until(&mut state, at);
                    }
                    (rate, _) => break read_len(rate),
                }
            }
        };
        let chunk = buf.get_mut(..len).unwrap_or_default();
        let outcome = match (&*socket).read(chunk) {
            Ok(0) => Outcome::Ended(None),
            Ok(n) => {
                received = received.saturating_add(as_u64(n));
                next_read = {
                    let rate = shared.state.lock().read_rate;
                    rate.filter(|&r| r > 0)
                        .and_then(|rate| Duration::try_from_secs_f64(n as f64 / rate as f64).ok())
                        .and_then(|pause| Instant::now().checked_add(pause))
                };
                Outcome::Results(splitter.push(chunk.get(..n).unwrap_or_default()))
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => {
                    continue;
                }
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => Outcome::Ended(None),
                _ => Outcome::Ended(Some(e)),
            },
        };
        let keep_reading = match outcome {
            Outcome::Results(results) => deliver(shared, id, results) && !splitter.is_failed(),
            Outcome::Ended(error) => {
                let mut results: Vec<_> = splitter.finish().map(Err).into_iter().collect();
                if let Some(e) = error {
                    results.push(Err(FrameError {
                        kind: FrameErrorKind::Io,
                        detail: format!("reading failed: {e}"),
                        connection: id,
                        frame_offset: received,
                        offset: received,
                    }));
                }
                deliver(shared, id, results);
                false
            }
        };
        if !keep_reading {
            let mut state = shared.state.lock();
            if let Some(connection) = state.connection(id) {
                connection.open = false;
                connection.socket = None;
            }
            drop(state);
            shared.changed.notify_all();
            return;
        }
    }
}

enum Outcome {
    Results(Vec<Result<ReceivedFrame, FrameError>>),
    Ended(Option<io::Error>),
}

fn read_len(rate: Option<u64>) -> usize {
    match rate {
        None => READ_CHUNK,
        Some(rate) => usize::try_from(rate / 20)
            .unwrap_or(READ_CHUNK)
            .clamp(1, READ_CHUNK),
    }
}

/// Records a reader's results, unless the agent closed the connection meanwhile; holds
/// them back while reading is stopped. Returns whether to go on reading.
fn deliver(shared: &Shared, id: u64, results: Vec<Result<ReceivedFrame, FrameError>>) -> bool {
    if results.is_empty() {
        return true;
    }
    let mut state = shared.state.lock();
    loop {
        if !state.is_open(id) {
            // Frames the reader had already taken from the kernel when the agent was
            // killed were received: the kernel, not the agent, discards the rest. A frame
            // cut off by the kill is not an error of the stream.
            if state.connection(id).is_some_and(|c| c.killed) {
                let frames = results.into_iter().filter(Result::is_ok).collect();
                record(&mut state, id, frames);
                drop(state);
                shared.changed.notify_all();
            }
            return false;
        }
        if !state.reading_paused() {
            break;
        }
        shared.changed.wait(&mut state);
    }
    let keep = record(&mut state, id, results);
    drop(state);
    shared.changed.notify_all();
    keep
}

fn record(state: &mut State, id: u64, results: Vec<Result<ReceivedFrame, FrameError>>) -> bool {
    let limit = state.drop_after;
    for result in results {
        match result {
            Ok(frame) => {
                let Some(connection) = state.connection(id) else {
                    return false;
                };
                if limit.is_some_and(|limit| connection.frames >= limit) {
                    return false;
                }
                connection.frames = connection.frames.saturating_add(1);
                let reached = limit.is_some_and(|limit| connection.frames >= limit);
                state.total_frames = state.total_frames.saturating_add(1);
                state.frames.push(frame);
                if reached {
                    return false;
                }
            }
            Err(error) => state.errors.push(error),
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        let written = rmpv::encode::write_value(&mut out, value);
        assert!(written.is_ok());
        out
    }

    fn frame_value(tag: &str, ts: i64, body: Vec<(&str, Value)>) -> Value {
        Value::Array(vec![
            Value::from(tag),
            Value::Array(vec![Value::Array(vec![
                Value::from(ts),
                Value::Map(body.into_iter().map(|(k, v)| (Value::from(k), v)).collect()),
            ])]),
            Value::Map(vec![(Value::from("TimeFormat"), Value::from("DateTime"))]),
        ])
    }

    fn frame(n: i64) -> Vec<u8> {
        encode(&frame_value(
            "AsmAuditDP",
            n,
            vec![
                ("OperationName", Value::from(format!("op{n}"))),
                (
                    "CustomData",
                    Value::Map(vec![(Value::from("n"), Value::from(n))]),
                ),
            ],
        ))
    }

    fn ok_frames(results: Vec<Result<ReceivedFrame, FrameError>>) -> Vec<ReceivedFrame> {
        results
            .into_iter()
            .map(|r| match r {
                Ok(frame) => frame,
                Err(e) => panic!("unexpected error: {e}"),
            })
            .collect()
    }

    fn only_error(results: Vec<Result<ReceivedFrame, FrameError>>) -> FrameError {
        let mut errors: Vec<_> = results.into_iter().filter_map(Result::err).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.remove(0)
    }

    #[test]
    fn decodes_frames_in_one_push_and_byte_by_byte() {
        let stream: Vec<u8> = (0..3).flat_map(frame).collect();
        let mut whole = FrameSplitter::new(DEFAULT_MAX_FRAME_LEN);
        let at_once = ok_frames(whole.push(&stream));
        assert_eq!(at_once.len(), 3);
        assert_eq!(whole.buffered(), 0);

        let mut bytes = FrameSplitter::new(DEFAULT_MAX_FRAME_LEN);
        let mut one_by_one = Vec::new();
        for b in &stream {
            one_by_one.extend(ok_frames(bytes.push(std::slice::from_ref(b))));
        }
        assert_eq!(at_once, one_by_one);
        for (n, f) in (0..).zip(&at_once) {
            assert_eq!(f.tag, "AsmAuditDP");
            assert_eq!(f.ts, n);
            assert_eq!(f.body_str("OperationName"), Some(format!("op{n}").as_str()));
            assert_eq!(f.custom("n").and_then(Value::as_i64), Some(n));
            assert_eq!(f.option_str("TimeFormat"), Some("DateTime"));
            assert_eq!(f.body_keys(), ["OperationName", "CustomData"]);
            assert_eq!(f.raw, frame(n));
        }
        assert_eq!(at_once[1].offset, as_u64(frame(0).len()));
        assert!(bytes.finish().is_none());
    }

    #[test]
    fn truncated_stream_is_reported_by_finish() {
        let bytes = frame(1);
        let mut splitter = FrameSplitter::for_connection(4, 1024);
        assert!(splitter.push(&bytes[..bytes.len() - 1]).is_empty());
        let error = splitter.finish().expect("a truncated frame");
        assert_eq!(error.kind, FrameErrorKind::Truncated);
        assert_eq!(error.connection, 4);
        assert!(
            splitter.push(&bytes).is_empty(),
            "failed splitters ignore input"
        );
    }

    #[test]
    fn reserved_marker_is_malformed_with_its_offset() {
        let mut stream = frame(0);
        let first = as_u64(stream.len());
        stream.extend([0x93, 0xc1]);
        let mut splitter = FrameSplitter::new(1024);
        let results = splitter.push(&stream);
        assert_eq!(results.len(), 2);
        let error = only_error(results);
        assert_eq!(error.kind, FrameErrorKind::Malformed);
        assert_eq!(error.frame_offset, first);
        assert_eq!(error.offset, first + 1);
        assert!(splitter.is_failed());
        assert_eq!(splitter.buffered(), 0);
    }

    #[test]
    fn too_large_frames_are_refused_early() {
        // Declares a 1 GiB string: refused on the header alone.
        let mut splitter = FrameSplitter::new(1000);
        let error = only_error(splitter.push(&[0x93, 0xdb, 0x40, 0, 0, 0]));
        assert_eq!(error.kind, FrameErrorKind::TooLarge);

        // Exactly at the limit is fine, one byte over is not.
        let bytes = frame(7);
        let mut exact = FrameSplitter::new(bytes.len());
        assert_eq!(ok_frames(exact.push(&bytes)).len(), 1);
        let mut over = FrameSplitter::new(bytes.len() - 1);
        assert_eq!(only_error(over.push(&bytes)).kind, FrameErrorKind::TooLarge);

        // A huge array count is refused before its elements arrive.
        let mut splitter = FrameSplitter::new(1 << 20);
        let error = only_error(splitter.push(&[0x93, 0xa1, b'T', 0xdd, 0xff, 0xff, 0xff, 0xff]));
        assert_eq!(error.kind, FrameErrorKind::TooLarge);
    }

    #[test]
    fn deep_nesting_is_malformed_not_a_stack_overflow() {
        let mut splitter = FrameSplitter::new(DEFAULT_MAX_FRAME_LEN);
        let error = only_error(splitter.push(&vec![0x91; 100_000]));
        assert_eq!(error.kind, FrameErrorKind::Malformed);
        assert!(error.detail.contains("nest"), "{error}");
    }

    /// `[ "T", [[1, {"a": [[[...nil...]]]}]], {} ]` with `depth` arrays around the nil.
    fn nested(depth: usize) -> Vec<u8> {
        let mut bytes = b"\x93\xa1T\x91\x92\x01\x81\xa1a".to_vec();
        bytes.extend(std::iter::repeat_n(0x91, depth));
        bytes.extend([0xc0, 0x80]);
        bytes
    }

    #[test]
    fn nesting_up_to_the_limit_decodes_on_a_default_stack() {
        // The envelope opens 5 levels (counting the frame itself); the rest is the body's.
        let deepest = MAX_NESTING - 5;
        let handle = std::thread::Builder::new()
            .stack_size(READER_STACK)
            .spawn(move || {
                let frame = decode_frame(&nested(deepest)).map(|f| f.ts);
                let too_deep = decode_frame(&nested(deepest + 1)).map_err(|e| e.kind);
                (frame, too_deep)
            })
            .expect("spawn");
        let (frame, too_deep) = handle.join().expect("no stack overflow");
        assert_eq!(frame, Ok(1));
        assert_eq!(too_deep, Err(FrameErrorKind::Malformed));
    }

    #[test]
    fn wrong_shapes_are_described() {
        let cases: Vec<(Value, &str)> = vec![
            (Value::Array(vec![Value::from("T")]), "array of 3"),
            (
                Value::Array(vec![
                    Value::from(1),
                    Value::Array(vec![]),
                    Value::Map(vec![]),
                ]),
                "tag must be a string",
            ),
            (
                Value::Array(vec![
                    Value::from("T"),
                    Value::Array(vec![]),
                    Value::Map(vec![]),
                ]),
                "exactly 1 entry",
            ),
            (
                Value::Array(vec![
                    Value::from("T"),
                    Value::Array(vec![Value::Array(vec![
                        Value::from("x"),
                        Value::Map(vec![]),
                    ])]),
                    Value::Map(vec![]),
                ]),
                "time stamp must be an integer",
            ),
            (
                Value::Array(vec![
                    Value::from("T"),
                    Value::Array(vec![Value::Array(vec![
                        Value::from(u64::MAX),
                        Value::Map(vec![]),
                    ])]),
                    Value::Map(vec![]),
                ]),
                "does not fit",
            ),
            (
                Value::Array(vec![
                    Value::from("T"),
                    Value::Array(vec![Value::Array(vec![Value::from(1), Value::Nil])]),
                    Value::Map(vec![]),
                ]),
                "record must be a map",
            ),
            (
                Value::Array(vec![
                    Value::from("T"),
                    Value::Array(vec![Value::Array(vec![
                        Value::from(1),
                        Value::Map(vec![(Value::from(1), Value::Nil)]),
                    ])]),
                    Value::Map(vec![]),
                ]),
                "keys must be strings",
            ),
            (
                frame_value("T", 1, vec![("a", Value::Nil), ("a", Value::Nil)]),
                "twice",
            ),
            (
                Value::Array(vec![
                    Value::from("T"),
                    Value::Array(vec![Value::Array(vec![Value::from(1), Value::Map(vec![])])]),
                    Value::Nil,
                ]),
                "options must be a map",
            ),
        ];
        for (value, expected) in cases {
            let error = decode_frame(&encode(&value)).expect_err("a bad shape");
            assert_eq!(error.kind, FrameErrorKind::Shape, "{error}");
            assert!(
                error.detail.contains(expected),
                "{error} should say {expected}"
            );
        }
        // A string that is not UTF-8: [ "T", [[1, {"a": "\xff"}]], {} ].
        let error =
            decode_frame(b"\x93\xa1T\x91\x92\x01\x81\xa1a\xa1\xff\x80").expect_err("not UTF-8");
        assert_eq!(error.kind, FrameErrorKind::Shape, "{error}");
        assert!(
            error.detail.contains("frame[1][0][1].a is not valid UTF-8"),
            "{error}"
        );
        // Not an array at all: refused on the first byte.
        let mut splitter = FrameSplitter::new(1024);
        let error = only_error(splitter.push(b"GET / HTTP/1.1\r\n"));
        assert_eq!((error.kind, error.offset), (FrameErrorKind::Shape, 0));
    }

    #[test]
    fn decode_frame_wants_exactly_one_frame() {
        let one = frame(1);
        assert!(decode_frame(&one).is_ok());
        let mut two = one.clone();
        two.extend(frame(2));
        assert_eq!(
            decode_frame(&two).map_err(|e| e.kind),
            Err(FrameErrorKind::Shape)
        );
        assert_eq!(
            decode_frame(&one[..3]).map_err(|e| e.kind),
            Err(FrameErrorKind::Truncated)
        );
        assert_eq!(
            decode_frame(&[]).map_err(|e| e.kind),
            Err(FrameErrorKind::Truncated)
        );
    }

    /// The scanner's verdict on arbitrary bytes matches rmpv's.
    fn scanner_agrees_with_rmpv(bytes: &[u8]) {
        let mut scanner = Scanner::new();
        // Skip the frame-must-be-an-array rule by scanning inside a 1-element array.
        let mut wrapped = vec![0x91];
        wrapped.extend_from_slice(bytes);
        let verdict = scanner.advance(&wrapped, usize::MAX);
        let mut reader = bytes;
        let decoded = rmpv::decode::read_value_with_max_depth(&mut reader, usize::MAX);
        match verdict {
            Scan::Complete(len) => {
                assert!(decoded.is_ok(), "scanner: complete, rmpv: {decoded:?}");
                assert_eq!(len - 1, bytes.len() - reader.len());
            }
            Scan::Incomplete => {
                let kind = decoded.as_ref().map_err(rmpv::decode::Error::kind);
                assert_eq!(
                    kind.err(),
                    Some(io::ErrorKind::UnexpectedEof),
                    "{decoded:?}"
                );
            }
            Scan::Error { kind, .. } => {
                assert_eq!(kind, FrameErrorKind::Malformed);
                // rmpv reads 0xc1 as nil; the scanner is stricter. Deep nesting needs
                // more than the bytes proptest makes.
                assert!(bytes.contains(&0xc1));
            }
        }
    }

    proptest! {
        #[test]
        fn scanner_matches_rmpv_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            scanner_agrees_with_rmpv(&bytes);
        }

        #[test]
        fn scanner_matches_rmpv_on_cut_frames(n in any::<i64>(), cut in 0usize..200) {
            let bytes = frame(n);
            scanner_agrees_with_rmpv(&bytes[..cut.min(bytes.len())]);
        }

        #[test]
        fn any_chunking_gives_the_same_frames(
            count in 1i64..5,
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
        ) {
            let stream: Vec<u8> = (0..count).flat_map(frame).collect();
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len())).collect();
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut splitter = FrameSplitter::new(DEFAULT_MAX_FRAME_LEN);
            let mut frames = Vec::new();
            let mut start = 0;
            for cut in cuts {
                frames.extend(ok_frames(splitter.push(&stream[start..cut])));
                start = cut;
            }
            let ts: Vec<i64> = frames.iter().map(|f| f.ts).collect();
            prop_assert_eq!(ts, (0..count).collect::<Vec<_>>());
            prop_assert!(splitter.finish().is_none());
        }

        #[test]
        fn garbage_never_panics_and_stays_bounded(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20),
        ) {
            let mut splitter = FrameSplitter::new(512);
            let mut errors = 0;
            for piece in &pieces {
                for result in splitter.push(piece) {
                    errors += usize::from(result.is_err());
                }
                prop_assert!(splitter.buffered() <= 512);
            }
            errors += usize::from(splitter.finish().is_some());
            prop_assert!(errors <= 1);
        }
    }
}
