//! Cutting a connection's byte stream into frames: a resumable walk over MessagePack
//! headers finds where each frame ends, then the frame is decoded whole.

use super::frame::{FrameError, FrameErrorKind, ReceivedFrame, decode_at};
use super::{MAX_NESTING, as_u64};

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

/// What the structure walk found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
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
pub(super) struct Scanner {
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
    pub(super) fn new() -> Self {
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

    pub(super) fn advance(&mut self, buf: &[u8], max_len: usize) -> Scan {
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
